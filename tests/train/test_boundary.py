"""When checkpoints are written between steps, and what a notice does (one process: the flags
are their own agreement; the two-rank agreement is in test_exact_resume_ddp.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from resnetctl.train.boundary import CheckpointCause, StepCheckpoints, StopTraining
from resnetctl.train.notices import Notice
from resnetctl.train.runner import Placement
from tests.train._helpers import job_spec


@dataclass
class Clock:
    now: float = 1_000.0
    slept: list[float] = field(default_factory=list)
    written_at: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@dataclass
class Heard:
    notice: Notice = field(default_factory=Notice)

    def current(self) -> Notice:
        return self.notice


@dataclass
class FakeRunner:
    step: int = 0


def _boundary(
    clock: Clock, heard: Heard, written: list[tuple[int, CheckpointCause]], **checkpoint: Any
) -> tuple[StepCheckpoints, FakeRunner]:
    spec = job_spec(checkpoint=checkpoint, failure={"notice_margin_s": 5})
    runner = FakeRunner()

    def write(r: Any, cause: CheckpointCause) -> float:
        written.append((r.step, cause))
        clock.written_at.append(clock.now)
        clock.now += 3.0  # the checkpoint takes 3 s to write
        return 3.0

    boundary = StepCheckpoints(
        spec,
        Placement(),
        write,
        notices=heard,
        epoch_end_checkpoint=lambda epoch: True,
        upload_seconds=lambda: 4.0,  # and 4 s to upload
        clock=clock,
        sleep=clock.sleep,
    )
    return boundary, runner


def _steps(boundary: StepCheckpoints, runner: FakeRunner, count: int, per_epoch: int) -> None:
    for _ in range(count):
        runner.step += 1
        done = (runner.step - 1) % per_epoch + 1
        boundary(runner, (runner.step - 1) // per_epoch + 1, done, per_epoch)  # type: ignore[arg-type]


def test_every_n_steps_skips_the_step_whose_epoch_end_checkpoints_anyway() -> None:
    written: list[tuple[int, CheckpointCause]] = []
    boundary, runner = _boundary(Clock(), Heard(), written, every_n_steps=4)
    _steps(boundary, runner, 12, per_epoch=6)
    # Step 12 ends epoch 2, whose own checkpoint follows: no second one.
    assert [step for step, _ in written] == [4, 8]
    assert all(not cause.urgent for _, cause in written)


def test_every_minutes_counts_from_the_last_checkpoint() -> None:
    clock, written = Clock(), []
    boundary, runner = _boundary(clock, Heard(), written, every_minutes=1)
    for _ in range(10):
        clock.now += 25
        _steps(boundary, runner, 1, per_epoch=100)
    # 60 s after the start (step 3, at 75 s), then 60 s after each checkpoint ended: steps
    # come every 25 s and a checkpoint takes 3 s, so every third step.
    assert [step for step, _ in written] == [3, 6, 9]


def test_a_drain_checkpoints_at_once_then_once_more_before_its_deadline_and_holds() -> None:
    clock, heard, written = Clock(), Heard(), []
    boundary, runner = _boundary(clock, heard, written)
    _steps(boundary, runner, 3, per_epoch=100)
    assert written == []
    heard.notice = Notice(preempted=True, deadline=clock.now + 30, reason="node abc drained")
    _steps(boundary, runner, 1, per_epoch=100)
    ((step, cause),) = written
    assert step == 4 and cause.notice and cause.urgent and "node abc drained" in cause.reason
    # Training goes on until the deadline less write (3 s), upload (4 s) and margin (5 s).
    while len(written) == 1:
        clock.now += 2
        _steps(boundary, runner, 1, per_epoch=100)
    step, cause = written[-1]
    assert cause.urgent and not cause.notice and "deadline" in cause.reason
    deadline = heard.notice.deadline
    # Started 12 s before it (the flags are read each step, every 2 s here).
    assert deadline - 12 <= clock.written_at[-1] <= deadline - 12 + 2
    # Then no more steps: the workers wait to be torn down, and train on only well after it.
    assert sum(clock.slept) >= deadline - (clock.written_at[-1] + 3) + 100


def test_a_stop_request_checkpoints_and_ends_the_run() -> None:
    clock, heard, written = Clock(), Heard(), []
    boundary, runner = _boundary(clock, heard, written, every_n_steps=100)
    _steps(boundary, runner, 5, per_epoch=6)
    heard.notice = Notice(stop=True, reason="Ctrl-C")
    with pytest.raises(StopTraining, match="Ctrl-C") as stopped:
        # Even at the last step of an epoch: the epoch's own checkpoint will not come.
        _steps(boundary, runner, 1, per_epoch=6)
    assert stopped.value.step == 6 and written[-1][0] == 6 and written[-1][1].urgent
