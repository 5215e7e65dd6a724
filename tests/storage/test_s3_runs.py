"""The run-storage layer answers the same on local disk and in a bucket (a real S3 server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from resnetctl.storage import (
    CHECKPOINT_META,
    RunRecord,
    StoragePath,
    best_checkpoint,
    list_runs,
    load_checkpoint,
    resolve_resume,
    storage_root,
)
from resnetctl.train.checkpoint import save_checkpoint


@pytest.fixture(params=["local", "s3"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> StoragePath:
    if request.param == "local":
        return StoragePath.of(tmp_path / "runs")
    bucket = request.getfixturevalue("bucket")
    return StoragePath.of(f"s3://{bucket}/runs")


def write_run(root: StoragePath, name: str, job: str, errors: list[float], tmp: Path) -> None:
    RunRecord(name, job, "sqlite:///x.db", f"id-{name}").save(root)
    for epoch, error in enumerate(errors, start=1):
        local = tmp / name / f"epoch_{epoch:04d}"
        save_checkpoint(
            local,
            {"w": torch.full((2,), float(epoch))},
            {"epoch": epoch, "metrics": {"val_top1_error": error}},
        )
        for file in local.iterdir():
            (root / name / "ray" / local.name / file.name).write_bytes(file.read_bytes())


def test_runs_are_found_resumed_and_ranked_alike_on_disk_and_in_a_bucket(
    root: StoragePath, tmp_path: Path
) -> None:
    write_run(root, "quickstart-20261201-100000", "quickstart", [0.5, 0.3, 0.4], tmp_path)
    write_run(root, "quickstart-20261202-090000", "quickstart", [0.6, 0.2], tmp_path)
    write_run(root, "tiny-20261203-000000", "tiny", [0.9], tmp_path)

    assert [r.run_name for r in list_runs(root)] == [
        "quickstart-20261201-100000",
        "quickstart-20261202-090000",
        "tiny-20261203-000000",
    ]
    checkpoint, record = resolve_resume("latest", root, job="quickstart")
    assert record is not None and record.mlflow_run_id == "id-quickstart-20261202-090000"
    assert str(checkpoint) == f"{root}/quickstart-20261202-090000/ray/epoch_0002"
    # A URI (or path) handed to a worker parses back to the same checkpoint.
    state, meta = load_checkpoint(str(checkpoint))
    assert meta["epoch"] == 2 and torch.equal(state["w"], torch.full((2,), 2.0))

    best = best_checkpoint(root / "quickstart-20261201-100000", "val_top1_error", "min")
    assert best is not None and best.name == "epoch_0002"
    assert json.loads((best / CHECKPOINT_META).read_text())["metrics"]["val_top1_error"] == 0.3

    with pytest.raises(FileNotFoundError, match="known runs: .*tiny-20261203-000000"):
        resolve_resume("nope", root, job="quickstart")


def test_a_bucket_run_is_objects_in_the_bucket(s3_server, bucket: str) -> None:
    RunRecord("r-1", "tiny", "sqlite:///x.db", "abc").save(f"s3://{bucket}/runs")
    assert s3_server.keys(bucket) == ["runs/r-1/resnetctl-run.json"]
    assert RunRecord.load(f"s3://{bucket}/runs", "r-1") == RunRecord(
        "r-1", "tiny", "sqlite:///x.db", "abc"
    )
    assert RunRecord.load(f"s3://{bucket}/runs", "r-2") is None


def test_the_storage_root_takes_a_uri_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bucket: str
) -> None:
    monkeypatch.setenv("RESNETCTL_STORAGE", f"s3://{bucket}/team/runs")
    root = storage_root()
    assert not root.is_local and str(root) == f"s3://{bucket}/team/runs"
    assert root.ray_storage()["storage_path"] == f"{bucket}/team/runs"
    assert "storage_filesystem" in root.ray_storage()
    with pytest.raises(TypeError, match="object store"):
        Path(root)  # never silently a local path
    monkeypatch.delenv("RESNETCTL_STORAGE")
    monkeypatch.chdir(tmp_path)
    assert str(storage_root()) == str(tmp_path.resolve() / ".resnetctl" / "runs")
    assert storage_root(f"s3://{bucket}/x").name == "x"
