"""`build_trainer`: what the spec asks of Ray Train reaches the `TorchTrainer` (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.fs
import pytest
import ray.train

from resnetctl.launch.trainer import build_trainer
from resnetctl.spec import load_spec
from resnetctl.train.loop import checkpoint_uri
from tests.conftest import JOBS


@pytest.mark.parametrize("max_failures", [0, 3])
def test_the_spec_sets_the_worker_group_restarts(max_failures: int, tmp_path: Path) -> None:
    spec = load_spec(JOBS / "quickstart.yaml", [f"failure.max_failures={max_failures}"])
    trainer = build_trainer(spec, run_name="r", storage_path=tmp_path, loop_config={})
    run_config = trainer.run_config
    # A lost worker or node is retried this many times: the spot-instance story rests on it.
    assert run_config.failure_config.max_failures == max_failures
    assert run_config.storage_path == str(tmp_path) and run_config.name == "r"
    assert trainer.scaling_config.num_workers == spec.resources.workers == 2


def test_a_restored_checkpoint_is_named_by_its_bucket_uri() -> None:
    s3 = pyarrow.fs.S3FileSystem(anonymous=True, region="us-east-1")  # nothing is contacted
    in_bucket = ray.train.Checkpoint("bucket/runs/r/epoch_0002", filesystem=s3)
    assert checkpoint_uri(in_bucket) == "s3://bucket/runs/r/epoch_0002"
    assert checkpoint_uri(ray.train.Checkpoint("/runs/r/epoch_0002")) == "/runs/r/epoch_0002"
