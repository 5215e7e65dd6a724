"""An elastic run continued with fewer workers from a checkpoint in the middle of an epoch:
with `keep_global_batch` at the same step, with the plan's global batch and rate at every step;
with `scale_lr` at the same number of images, the new count's rate reached through a ramp.

Two gloo ranks train and stop; one process continues (a lost node), with real DALI loaders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resnetctl.spec import JobSpec
from resnetctl.train.checkpoint import read_meta
from resnetctl.train.loop import run_training
from resnetctl.train.runner import Placement, Runner
from tests.train._dist import run_distributed
from tests.train._helpers import FakeSession, job_spec
from tests.train.test_exact_resume import StopAt

# Two DDP runs and two single-process ones, real DALI loaders: 8 s a test here.
pytestmark = pytest.mark.slow

EPOCHS = 3


def _spec(policy: str) -> JobSpec:
    data = {
        "source": {
            "kind": "synthetic",
            "num_classes": 4,
            "train_per_class": 12,  # 48 images, 16 a step: 3 steps an epoch at either count
            "val_per_class": 2,
            "image_size": [20, 20],
            "seed": 5,
        },
        "pipeline": {"kind": "cifar", "crop": 16, "pad": 2},
        "threads": 1,
    }
    return job_spec(
        train={
            "epochs": EPOCHS,
            "batch_size_per_worker": None,
            "global_batch_size": 16,
            "lr_reference_batch": 16,
            "log_every_n_steps": 1,
            "schedule": {"kind": "cosine"},
        },
        data=data,
        checkpoint={"every_n_steps": 100},
        resources={
            "workers": {"min": 1, "max": 2},
            "elastic_policy": policy,
            "resize_warmup_steps": 4,
        },
    )


def _steps(reports: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(m["global_step"]): m for m in reports if "global_step" in m}


def _two_ranks(rank: int, world: int, out: Path, policy: str) -> dict[str, Any]:
    spec = _spec(policy)

    def train(name: str, stop: StopAt | None = None) -> tuple[FakeSession, StopAt | None]:
        placement = Placement.from_process_group()
        runner = Runner(spec, placement)
        session = FakeSession(out / name / f"rank{rank}")
        run_training(spec, placement, session, runner=runner, notices=stop, ledger=stop)
        return session, stop

    whole, _ = train("whole")
    # The notice (a node being lost) is heard after step 4; two ranks agree on it at the next
    # step boundary and checkpoint after step 5, the second step of epoch 2.
    stopped, ledger = train("stopped", stop=StopAt(4))
    return {
        "whole": _steps([m for m, _, _ in whole.reports]),
        "checkpoint": stopped.checkpoints[-1] if rank == 0 else None,
    }


def _one_worker(spec: JobSpec, tmp: Path, resume_from: Path | None) -> tuple[FakeSession, Runner]:
    runner = Runner(spec, Placement())
    session = FakeSession(tmp, resume_from=resume_from)
    run_training(spec, Placement(), session, runner=runner)
    return session, runner


def test_keep_global_batch_continues_at_the_same_step_with_the_plans_batch_and_rate(
    tmp_path: Path,
) -> None:
    ranks = run_distributed(_two_ranks, 2, tmp_path / "two", tmp_path / "two", "keep_global_batch")
    whole, checkpoint = ranks[0]["whole"], ranks[0]["checkpoint"]
    meta = read_meta(checkpoint)
    assert (meta["step"], meta["world_size"], meta["position"]) == (
        5,
        2,
        {"epoch": 2, "steps_done": 2},
    )
    resumed, runner = _one_worker(_spec("keep_global_batch"), tmp_path / "one", checkpoint)
    # One worker: 16 images a step as 2 micro-batches of 8, as many steps an epoch as the plan.
    assert (runner.split.per_worker_batch, runner.split.accumulation) == (8, 2)
    assert runner.steps_per_epoch == 3 and runner.total_steps == 3 * EPOCHS
    after = _steps([m for m, _, _ in resumed.reports])
    # It continues after step 5: no step trained again, none skipped.
    restore = {"restored_step": 5, "workers": 1, "global_batch": 16, "peak_lr": 0.1}
    assert resumed.reports[0][0] == restore
    assert sorted(after) == list(range(6, 3 * EPOCHS + 1))
    for step, metrics in after.items():
        assert metrics["workers"] == 1 and whole[step]["workers"] == 2
        assert metrics["step_global_batch"] == whole[step]["step_global_batch"] == 16
        assert metrics["step_lr"] == pytest.approx(whole[step]["step_lr"], rel=1e-12), step
    epochs = [m["epoch"] for m, _, _ in resumed.epoch_reports]
    assert epochs == [2, 3]


def test_scale_lr_continues_at_the_same_images_and_ramps_to_the_new_rate(tmp_path: Path) -> None:
    ranks = run_distributed(_two_ranks, 2, tmp_path / "two", tmp_path / "two", "scale_lr")
    checkpoint = ranks[0]["checkpoint"]
    spec = _spec("scale_lr")
    reference, _ = _one_worker(spec, tmp_path / "reference", None)  # one worker from the start
    resumed, runner = _one_worker(spec, tmp_path / "one", checkpoint)
    # One worker keeps 8 images a step: 6 steps an epoch. Epoch 1 (6 steps) and the first two
    # steps of epoch 2 (32 images = 4 steps of 8) were trained: it continues after step 10.
    assert runner.split.global_batch == 8 and runner.steps_per_epoch == 6
    restore = {"restored_step": 10, "workers": 1, "global_batch": 8, "peak_lr": 0.05}
    assert resumed.reports[0][0] == restore
    after = _steps([m for m, _, _ in resumed.reports])
    alone = _steps([m for m, _, _ in reference.reports])
    assert sorted(after) == list(range(11, 6 * EPOCHS + 1))
    # The ramp starts at the two workers' rate (twice the new one) and reaches the new
    # count's schedule after resize_warmup_steps (4).
    ratios = [after[s]["step_lr"] / alone[s]["step_lr"] for s in range(11, 16)]
    assert ratios == pytest.approx([2.0, 1.75, 1.5, 1.25, 1.0])
    for step in range(15, 6 * EPOCHS + 1):
        assert after[step]["step_lr"] == pytest.approx(alone[step]["step_lr"], rel=1e-12)
