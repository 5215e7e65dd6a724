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


def test_a_worker_range_is_ray_trains_elastic_scaling(tmp_path: Path) -> None:
    elastic = ["resources.workers={min: 1, max: 2}", "resources.resize_check_s=5"]
    spec = load_spec(JOBS / "quickstart.yaml", elastic)
    trainer = build_trainer(spec, run_name="r", storage_path=tmp_path, loop_config={})
    scaling = trainer.scaling_config
    assert scaling.num_workers == (1, 2) and scaling.elasticity_enabled
    assert (scaling.min_workers, scaling.max_workers) == (1, 2)
    assert scaling.elastic_resize_monitor_interval_s == 5
    fixed = build_trainer(
        load_spec(JOBS / "quickstart.yaml"), run_name="r", storage_path=tmp_path, loop_config={}
    ).scaling_config
    assert fixed.num_workers == 2 and not fixed.elasticity_enabled
