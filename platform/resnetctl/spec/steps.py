"""The step arithmetic of a run, in one place: steps per epoch from the data set's size, and
lengths in epochs or iterations as optimiser steps. The plan, the feasibility checks, the
schedules, the runner and the reproduction reports all count with these."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resnetctl.spec.train import TrainSpec


def steps_per_epoch(
    train_images: int, per_worker_batch: int, workers: int, accumulation: int = 1
) -> int:
    """Optimiser steps per epoch: every rank runs the same number of full batches of its shard
    (a rank with an extra step would wait forever in DDP's allreduce), `accumulation` of them
    per optimiser step."""
    return max(1, (train_images // workers) // per_worker_batch // accumulation)


def to_steps(length: int, unit: str, steps_per_epoch: int) -> int:
    """A length in epochs or iterations, in optimiser steps."""
    return length * steps_per_epoch if unit == "epoch" else length


def total_steps(train: TrainSpec, steps_per_epoch: int) -> int:
    """The run's length (`train.epochs` or `train.iterations`) in optimiser steps."""
    length, unit = train.length
    return to_steps(length, unit, steps_per_epoch)
