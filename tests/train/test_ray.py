"""The worker function under a real Ray Train V2 run: 2 workers, a worker killed mid-run, and a
restart that continues from the latest checkpoint at the next epoch, not epoch 1."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from resnetctl.train.checkpoint import META_FILE, STATE_FILE, read_meta
from tests.train._helpers import job_spec

pytestmark = pytest.mark.slow


def flaky_loop(config: dict[str, Any]) -> None:
    """`train_loop_per_worker`, except that rank 1 dies once at the start of epoch 2, and
    rank 0 logs every epoch it starts."""
    import ray.train

    from resnetctl.train.loop import train_loop_per_worker
    from resnetctl.train.runner import Runner

    marker, log = Path(config["marker"]), Path(config["epoch_log"])
    run_epoch = Runner.run_epoch

    def patched(self: Runner, epoch: int, **kwargs: Any) -> dict[str, float]:
        rank = ray.train.get_context().get_world_rank()
        if rank == 0:
            with log.open("a") as f:
                f.write(f"{epoch}\n")
        if epoch == 2 and rank == 1 and not marker.exists():
            marker.touch()
            raise RuntimeError("injected worker failure")
        return run_epoch(self, epoch, **kwargs)

    Runner.run_epoch = patched  # type: ignore[method-assign]
    train_loop_per_worker(config)


@pytest.fixture
def ray_local() -> Any:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_worker_failure_resumes_at_the_next_epoch(ray_local: Any, tmp_path: Path) -> None:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    spec = job_spec(train={"epochs": 3}, checkpoint={"every_n_epochs": 1})
    config = {
        "spec": spec.model_dump(mode="json"),
        "marker": str(tmp_path / "failed-once"),
        "epoch_log": str(tmp_path / "epochs.txt"),
    }
    trainer = TorchTrainer(
        flaky_loop,
        train_loop_config=config,
        scaling_config=ScalingConfig(num_workers=2, use_gpu=False),
        # A short collective timeout bounds the wait of the surviving rank.
        torch_config=TorchConfig(backend="gloo", timeout_s=60),
        run_config=RunConfig(
            name="resume",
            storage_path=str(tmp_path / "storage"),
            failure_config=FailureConfig(max_failures=1),
            checkpoint_config=CheckpointConfig(num_to_keep=None),
        ),
    )
    start = time.monotonic()
    result = trainer.fit()
    elapsed = time.monotonic() - start

    assert result.error is None
    started = [int(line) for line in (tmp_path / "epochs.txt").read_text().split()]
    # Epoch 1 trained once; after the failure in epoch 2 the group restarted at epoch 2.
    assert started.count(1) == 1 and started[-2:] == [2, 3], started
    assert result.metrics["epoch"] == 3 and result.metrics["step"] == 6  # 2 steps per epoch
    checkpoint = Path(result.checkpoint.path)
    assert checkpoint.name == "epoch_0003"
    assert (checkpoint / STATE_FILE).is_file()
    assert read_meta(checkpoint)["epoch"] == 3 and (checkpoint / META_FILE).is_file()
    print(f"fit with one restart: {elapsed:.1f} s")
    assert elapsed < 240
