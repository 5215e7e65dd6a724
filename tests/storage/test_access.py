"""A worker that cannot read the run's storage stops the job before its first step, with one
message naming the storage, the node and the fix (simulated: the driver's file is absent on
"this node", as a head-node path is on every other node)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from resnetctl.storage import StorageUnreachableError, check_worker_access


def test_a_storage_this_node_cannot_read_is_one_clear_error(tmp_path: Path) -> None:
    marker = tmp_path / "runs" / "tiny-20261202-000000" / "resnetctl-run.json"
    started = time.monotonic()
    with pytest.raises(StorageUnreachableError) as caught:
        check_worker_access(str(marker), node="10.0.0.7 (node 3f2a)")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert f"run storage {tmp_path / 'runs'} is not reachable from node 10.0.0.7" in message
    assert str(marker) in message and "local path" in message
    assert "s3://BUCKET/runs" in message and "every node mounts" in message
    # What the driver wrote is readable: no error.
    marker.parent.mkdir(parents=True)
    marker.write_text("{}")
    check_worker_access(str(marker), node="head")


def test_the_worker_entry_point_checks_storage_before_anything_else(tmp_path: Path) -> None:
    from resnetctl.train.loop import train_loop_per_worker

    missing = tmp_path / "elsewhere" / "run" / "resnetctl-run.json"
    # No spec, no Ray Train context: the check comes first and is what fails.
    with pytest.raises(StorageUnreachableError, match="not reachable from node"):
        train_loop_per_worker({"spec": {}, "storage_marker": str(missing)})


def test_a_bucket_the_node_cannot_read_names_the_bucket(s3_server, bucket: str) -> None:
    marker = f"s3://{bucket}/runs/r-1/resnetctl-run.json"  # never written
    with pytest.raises(StorageUnreachableError) as caught:
        check_worker_access(marker, node="n1")
    assert f"run storage s3://{bucket}/runs is not reachable from node n1" in str(caught.value)
    assert "The storage is a bucket" in str(caught.value)
