"""Resuming a checkpoint with another number of workers.

The schedule is a function of the global step, and steps per epoch, total steps and milestones in
epochs are derived from the world size (through the shard length and, with
`batch_size_per_worker`, the global batch). Restoring the raw step counter under another world
size would therefore land at another point of the schedule: 8 -> 16 workers with a fixed
per-worker batch halves the steps per epoch, so step 30 x S of epoch 30 reads as epoch 60.

An elastic run with `keep_global_batch` (`resnetctl.spec.elastic`) has the same global batch and
the same steps per epoch at every count of its range: its step counter needs no mapping, and a
checkpoint from the middle of an epoch continues at the same step (`resize_position`).

Otherwise what a run keeps across a resize is its position in epochs, and in images inside the
epoch: the step counter is mapped to `epoch x steps_per_epoch` of the new world size. The run
then follows exactly the schedule a run of the new world size has from that epoch on (with the
peak rate the linear scaling rule gives the new global batch). Where that mapping cannot be exact
the resume is refused with a message naming both world sizes and the fix:

- a run measured in iterations whose global batch changes (an iteration is not the same amount
  of data any more);
- an epoch run whose global batch changes while a milestone or warm-up given in iterations is
  still ahead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from resnetctl.spec.steps import steps_per_epoch
from resnetctl.spec.train import StepSchedule, TrainSpec

if TYPE_CHECKING:
    from resnetctl.spec.job import JobSpec


class ResizeError(ValueError):
    """A checkpoint cannot be continued exactly with this number of workers."""


@dataclass(frozen=True)
class SavedProgress:
    """Where a checkpoint stands, and the world it was written by."""

    step: int
    world_size: int | None
    steps_per_epoch: int | None
    global_batch: int | None

    @classmethod
    def of(cls, state: Mapping[str, Any], train: TrainSpec) -> SavedProgress:
        """Read it from `Runner.state_dict()` output, inferring what older checkpoints lack."""
        step, epoch = int(state["step"]), int(state["epoch"])
        world = state.get("world_size")
        world = None if world is None else int(world)
        spe = state.get("steps_per_epoch")
        if spe is None and train.epochs is not None and epoch > 0 and step % epoch == 0:
            # An epoch run checkpoints at epoch ends only: step = epoch x steps_per_epoch.
            spe = step // epoch
        batch = state.get("global_batch")
        if batch is None and world is not None:
            batch = train.global_batch(world)
        return cls(
            step=step,
            world_size=world,
            steps_per_epoch=None if spe is None else int(spe),
            global_batch=None if batch is None else int(batch),
        )


def resume_step(
    train: TrainSpec,
    saved: SavedProgress,
    epoch: int,
    world_size: int,
    steps_per_epoch: int,
    batch: int | None = None,
) -> int:
    """The step counter that continues `saved` (written at the end of `epoch`) with
    `world_size` workers of `steps_per_epoch` steps each and a global batch of `batch`
    (default: `train.global_batch(world_size)`). Raises `ResizeError` when the schedule cannot
    be continued exactly."""
    batch = train.global_batch(world_size) if batch is None else batch
    same_batch = saved.global_batch is None or saved.global_batch == batch
    if saved.steps_per_epoch in (None, steps_per_epoch) and same_batch:
        return saved.step
    if train.epochs is None:
        if same_batch:
            # Iterations of the same global batch: the step counter is the schedule's clock.
            return saved.step
        raise _refuse(
            saved,
            world_size,
            batch,
            "the run is measured in iterations, and an iteration of the new global batch is "
            "another amount of data",
        )
    step = epoch * steps_per_epoch
    if not same_batch:
        ahead = _iteration_marks_ahead(train, min(saved.step, step))
        if ahead:
            raise _refuse(
                saved,
                world_size,
                batch,
                f"{' and '.join(ahead)} given in iterations {'is' if len(ahead) == 1 else 'are'} "
                "still ahead, "
                "and an iteration of the new global batch is another amount of data",
            )
    return step


def _iteration_marks_ahead(train: TrainSpec, step: int) -> list[str]:
    marks = []
    schedule = train.schedule
    if isinstance(schedule, StepSchedule) and schedule.unit == "iteration":
        later = [m for m in schedule.milestones if m > step]
        if later:
            marks.append(f"schedule.milestones {later}")
    if train.warmup.length and train.warmup.unit == "iteration" and train.warmup.length > step:
        marks.append(f"warmup.length {train.warmup.length}")
    return marks


def _refuse(saved: SavedProgress, world_size: int, batch: int, reason: str) -> ResizeError:
    return ResizeError(
        f"cannot resume exactly: the checkpoint was written by {saved.world_size} workers "
        f"(global batch {saved.global_batch}, step {saved.step}) and this run has {world_size} "
        f"workers (global batch {batch}); {reason}. Resume with resources.workers="
        f"{saved.world_size}, or set train.global_batch_size (instead of batch_size_per_worker) "
        "so that the global batch does not depend on the number of workers, and give the "
        "schedule in epochs."
    )


def plan_steps_per_epoch(spec: JobSpec, layout: Any) -> int | None:
    """Steps per epoch of the plan (at `resources.max_workers`) for an elastic run that keeps
    its global batch, from the data set's size; None for other runs or without the data set.
    Every count of the range has at least these many whole steps per epoch (each divides the
    same global batch), so capping at it makes the epochs, and the schedule, the plan's."""
    resources = spec.resources
    if not resources.elastic or resources.elastic_policy != "keep_global_batch" or layout is None:
        return None
    plan = spec.split()
    return steps_per_epoch(
        layout.train_files, plan.per_worker_batch, plan.workers, plan.accumulation
    )


def resized_steps_done(steps_done: int, saved_batch: int | None, batch: int, steps: int) -> int:
    """The steps of an epoch's new world that cover the images the old world's `steps_done`
    steps trained on (rounded down, so no image count is skipped), within its `steps`."""
    if saved_batch is None or saved_batch == batch:
        return min(steps_done, steps)
    return min(steps_done * saved_batch // batch, steps)


@dataclass(frozen=True)
class LRRamp:
    """Goyal et al.'s warm-up over a change of the global batch (`scale_lr`): from `start`, the
    rate is the schedule's times a factor that goes linearly from `first` (old batch / new
    batch, so the first step keeps the old rate) to 1 over `steps` steps."""

    start: int
    steps: int
    first: float

    def factor(self, step: int) -> float:
        """The multiplier at global step `step`."""
        if self.steps <= 0 or step >= self.start + self.steps:
            return 1.0
        done = max(0, step - self.start) / self.steps
        return self.first + (1.0 - self.first) * done

    def state_dict(self) -> dict[str, Any]:
        """For a checkpoint written during the ramp."""
        return {"start": self.start, "steps": self.steps, "first": self.first}
