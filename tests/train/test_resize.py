"""Resuming with another number of workers: the run continues at the same epoch of the schedule
(exactly the schedule a run of the new size has from there), or is refused with a clear message.

Workers are emulated in one process: rank 0 of a world of `w` with a shard of 4 / w batches,
which is all the schedule sees of the world size (steps per epoch and the global batch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resnetctl.train.loop import run_training
from resnetctl.train.resize import ResizeError
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import FakeSession, batches, job_spec, tiny_model

# 4 epochs, lr divided by 10 after epochs 1 and 2; the global batch grows with the workers.
STEP = {"epochs": 4, "schedule": {"kind": "step", "milestones": [1, 2], "unit": "epoch"}}
BATCHES = 4  # per epoch, over all workers


def _run(
    tmp: Path, world: int, train: dict[str, Any], resume_from: Path | None = None
) -> FakeSession:
    spec = job_spec(train=train, checkpoint={"every_n_epochs": 1})
    placement = Placement(world_size=world, wrap_model=lambda model: model)
    runner = Runner(
        spec,
        placement,
        model=tiny_model(),
        train_loader=batches(BATCHES // world),
        val_loader=batches(1),
    )
    session = FakeSession(tmp, resume_from=resume_from)
    run_training(spec, placement, session, runner=runner)
    return session


def _schedule(session: FakeSession) -> list[tuple[int, int, float]]:
    return [(m["epoch"], m["step"], round(m["lr"], 12)) for m, _, _ in session.epoch_reports]


@pytest.mark.parametrize(("before", "after"), [(1, 2), (2, 1)])
def test_a_resized_resume_follows_the_new_world_sizes_schedule_from_the_same_epoch(
    tmp_path: Path, before: int, after: int
) -> None:
    first = _run(tmp_path / "first", before, STEP)
    reference = _run(tmp_path / "reference", after, STEP)
    resumed = _run(tmp_path / "resumed", after, STEP, resume_from=first.checkpoints[0])
    # Epochs 2..4, each with the new world's steps and rates (lr 0.1 per 8 images per worker:
    # peak 0.1 x workers, divided after epochs 1 and 2).
    assert _schedule(resumed) == _schedule(reference)[1:]
    peak = 0.1 * after
    expected = [peak / 10, peak / 100, peak / 100]
    assert [lr for _, _, lr in _schedule(resumed)] == pytest.approx(expected)


def test_an_iteration_run_refuses_a_resize_that_changes_its_global_batch(tmp_path: Path) -> None:
    train = {"epochs": None, "iterations": 8}
    first = _run(tmp_path / "first", 1, train)
    with pytest.raises(ResizeError) as error:
        _run(tmp_path / "resumed", 2, train, resume_from=first.checkpoints[0])
    message = str(error.value)
    assert "written by 1 workers" in message and "this run has 2 workers" in message
    assert "resources.workers=1" in message and "train.global_batch_size" in message


def test_an_iteration_warmup_still_ahead_refuses_a_batch_change(tmp_path: Path) -> None:
    # 6 iterations: still ahead after the first epoch (4 steps on one worker), and shorter
    # than the run on either world size (16 and 8 iterations).
    train = {**STEP, "warmup": {"length": 6, "unit": "iteration"}}
    first = _run(tmp_path / "first", 1, train)
    with pytest.raises(ResizeError, match=r"warmup.length 6 given in iterations"):
        _run(tmp_path / "resumed", 2, train, resume_from=first.checkpoints[0])


def test_a_fixed_global_batch_resizes_exactly_in_iteration_runs(tmp_path: Path) -> None:
    train = {
        "epochs": None,
        "iterations": 10,
        "batch_size_per_worker": None,
        "global_batch_size": 8,
        "schedule": {"kind": "step", "milestones": [5], "unit": "iteration"},
    }
    first = _run(tmp_path / "first", 1, train)
    resumed = _run(tmp_path / "resumed", 2, train, resume_from=first.checkpoints[0])
    # The step counter is the clock: same global batch, same iterations, same rates.
    assert [m["step"] for m, _, _ in resumed.epoch_reports][-1] == 10
    assert resumed.epoch_reports[-1][0]["lr"] == pytest.approx(first.reports[-1][0]["lr"])
