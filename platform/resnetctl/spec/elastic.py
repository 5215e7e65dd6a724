"""How a run's batch is split over any worker count of its range, and at which peak rate.

The plan of a job is made for `resources.max_workers`: its global batch, per-worker batch,
accumulation and peak lr are those `TrainSpec` gives at that count. With a fixed count that is
all there is. With a range (`resources.workers: {min, max}`) each count below `max` gets a split
by `resources.elastic_policy`:

- `keep_global_batch`: the global batch G of the plan stays, and so do the peak lr and, step for
  step, the schedule. The per-worker batch never exceeds the plan's (memory was sized for it):
  the accumulation is the smallest one that divides G into whole micro-batches of at most the
  plan's per-worker batch (G = per-worker batch x workers x accumulation). A count with no such
  split is refused at validation.
- `scale_lr`: the per-worker batch and accumulation of the plan stay; the global batch and the
  peak lr scale linearly with the workers (Goyal et al.).

Every place that needs a count's batch or rate (plan, feasibility, loaders, schedule,
checkpoints) asks `batch_split`, so they all agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from resnetctl.spec.runtime import ResourcesSpec
    from resnetctl.spec.train import TrainSpec


@dataclass(frozen=True)
class BatchSplit:
    """The batch and rate of a run at one worker count."""

    workers: int
    per_worker_batch: int  # images per forward pass (micro-batch) on one worker
    accumulation: int  # micro-batches per optimiser step
    global_batch: int  # images per optimiser step over all workers
    peak_lr: float  # after the linear scaling rule, before schedule and warm-up


class NoSplitError(ValueError):
    """A worker count at which the plan's global batch has no whole split."""


def batch_split(train: TrainSpec, resources: ResourcesSpec, workers: int) -> BatchSplit:
    """The split at `workers` (within the range); raises `NoSplitError` when there is none.
    A fixed count has the split `TrainSpec` gives at any count (a resume with another count)."""
    if not resources.elastic:
        return BatchSplit(
            workers=workers,
            per_worker_batch=train.per_worker_batch(workers),
            accumulation=train.accumulation_steps,
            global_batch=train.global_batch(workers),
            peak_lr=train.scaled_lr(workers),
        )
    top = resources.max_workers
    if not resources.min_workers <= workers <= top:
        raise NoSplitError(
            f"{workers} workers lie outside resources.workers "
            f"({resources.min_workers}-{top})"
        )
    planned = train.global_batch(top)
    per_worker = train.per_worker_batch(top)
    accumulation = train.accumulation_steps
    if workers != top:
        if resources.elastic_policy == "scale_lr":
            planned = per_worker * workers * accumulation
        else:
            found = _keep_global(planned, per_worker, workers)
            if found is None:
                raise NoSplitError(
                    f"the global batch {planned} has no whole split over {workers} workers "
                    f"with at most {per_worker} images per worker"
                )
            per_worker, accumulation = found
    return BatchSplit(
        workers=workers,
        per_worker_batch=per_worker,
        accumulation=accumulation,
        global_batch=planned,
        peak_lr=train.lr_for_batch(planned),
    )


def unsplittable_counts(train: TrainSpec, resources: ResourcesSpec) -> list[int]:
    """The worker counts of the range at which `batch_split` has no split."""
    missing = []
    for workers in range(resources.min_workers, resources.max_workers + 1):
        try:
            batch_split(train, resources, workers)
        except NoSplitError:
            missing.append(workers)
    return missing


def _keep_global(global_batch: int, most_per_worker: int, workers: int) -> tuple[int, int] | None:
    """(per-worker batch, accumulation) with the fewest micro-batches that splits
    `global_batch` over `workers` with at most `most_per_worker` images each."""
    if global_batch % workers:
        return None
    per_rank = global_batch // workers
    for accumulation in range(1, per_rank + 1):
        if per_rank % accumulation == 0 and per_rank // accumulation <= most_per_worker:
            return per_rank // accumulation, accumulation
    return None

