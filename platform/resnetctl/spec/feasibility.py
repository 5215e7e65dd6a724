"""Values that validate field by field but cannot run together with the data they meet.

Each rule here needs the size of the data set: the spec itself knows it for generated sources
(`synthetic`, `digits`), a dry run knows it once the data set is scanned. Both ask the same
functions, so `validate` and `submit --dry-run` tell the same truth.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from resnetctl.spec.data import CifarPipeline, DigitsSource, SyntheticSource
from resnetctl.spec.elastic import BatchSplit
from resnetctl.spec.steps import steps_per_epoch, total_steps

if TYPE_CHECKING:
    from resnetctl.spec.job import JobSpec

FieldPath = tuple[str, ...]
Problem = tuple[FieldPath, str]


def source_image_size(spec: JobSpec) -> tuple[int, int] | None:
    """(height, width) of every image of a generated source; None when only the files know."""
    source = spec.data.source
    if isinstance(source, SyntheticSource):
        return source.image_size
    if isinstance(source, DigitsSource):
        return source.image_size, source.image_size
    return None


def image_problems(spec: JobSpec, size: tuple[int, int]) -> list[Problem]:
    """A CIFAR crop larger than the padded image: DALI's slice would fill the rest with zeros,
    and validation (which sees the plain image) would get another input size."""
    pipeline = spec.data.pipeline
    if not isinstance(pipeline, CifarPipeline):
        return []
    height, width = size
    padded = min(height, width) + 2 * pipeline.pad
    if pipeline.crop > padded:
        return [
            (
                ("data", "pipeline", "crop"),
                f"data.pipeline.crop {pipeline.crop} is larger than the padded image "
                f"({height}x{width} + 2 x pad {pipeline.pad} = {padded}); lower the crop or "
                "raise data.pipeline.pad",
            )
        ]
    return []


def batch_norm_problems(spec: JobSpec) -> list[Problem]:
    """One image per worker on 1x1 maps: training-mode BatchNorm needs more than one value per
    channel, and ImageNet ResNets halve the input five times (a 32 crop ends at 1x1)."""
    train = spec.train
    if spec.model.family != "imagenet" or min(s.per_worker_batch for s in _splits(spec)) > 1:
        return []
    side = spec.pipeline.crop
    for _ in range(5):
        side = math.ceil(side / 2)
    if side > 1:
        return []
    batch_field = (
        "global_batch_size" if train.global_batch_size is not None else ("batch_size_per_worker")
    )
    return [
        (
            ("train", batch_field),
            f"train.{batch_field} gives 1 image per worker, and data.pipeline.crop "
            f"{spec.pipeline.crop} leaves 1x1 maps in the last stage: BatchNorm cannot train on "
            "one value per channel; use 2 or more images per worker or a crop above 32",
        )
    ]


def count_problems(
    spec: JobSpec, train_images: int, val_images: int, classes: int
) -> list[Problem]:
    """What the data set's size makes impossible: a batch larger than a worker's shard, a
    validation split too small to give every worker an image, fewer model outputs than
    classes, and schedule points beyond the run once steps per epoch are known."""
    problems: list[Problem] = []
    for split in _splits(spec):
        problems += _count_problems_at(spec, split, train_images, val_images, classes)
        if problems:
            break
    return problems


def _splits(spec: JobSpec) -> list[BatchSplit]:
    """The splits a run may train with: its count, or both ends of its worker range."""
    counts = sorted({spec.resources.max_workers, spec.resources.min_workers}, reverse=True)
    return [spec.split(workers) for workers in counts]


def _count_problems_at(
    spec: JobSpec, split: BatchSplit, train_images: int, val_images: int, classes: int
) -> list[Problem]:
    problems: list[Problem] = []
    train = spec.train
    workers = split.workers
    batch_field = (
        "global_batch_size" if train.global_batch_size is not None else ("batch_size_per_worker")
    )
    per_worker = split.per_worker_batch
    shard = train_images // workers
    if per_worker > shard:
        problems.append(
            (
                ("train", batch_field),
                f"train.{batch_field} gives a batch of {per_worker} per worker, larger than a "
                f"worker's shard of the training set ({train_images} images / {workers} "
                f"workers = {shard}); lower the batch or resources.workers",
            )
        )
    if val_images < workers:
        problems.append(
            (
                ("resources", "workers"),
                f"resources.workers {workers} exceeds the {val_images} validation images: "
                "every worker needs at least one",
            )
        )
    if spec.model.num_classes is not None and spec.model.num_classes < classes:
        problems.append(
            (
                ("model", "num_classes"),
                f"model.num_classes {spec.model.num_classes} is fewer than the {classes} "
                "classes of the data: labels beyond it have no output",
            )
        )
    if per_worker <= shard:
        per_epoch = steps_per_epoch(train_images, per_worker, workers, split.accumulation)
        problems += _schedule_problems(spec, per_epoch)
    return problems


def _schedule_problems(spec: JobSpec, per_epoch: int) -> list[Problem]:
    """Milestones and warm-up given in the other unit than the run's length, checked once
    steps per epoch are known (the same unit is checked by `TrainSpec` alone)."""
    train = spec.train
    unit = train.length[1]
    total = total_steps(train, per_epoch)
    last_epoch = math.ceil(total / per_epoch)
    run = f"the run of {total} iterations ({last_epoch} epochs of {per_epoch} steps)"

    def beyond(point: int, point_unit: str) -> bool:
        return point >= (total if point_unit == "iteration" else last_epoch)

    problems: list[Problem] = []
    schedule = train.schedule
    if schedule.kind == "step" and schedule.unit != unit:
        outside = [m for m in schedule.milestones if beyond(m, schedule.unit)]
        if outside:
            problems.append(
                (
                    ("train", "schedule", "milestones"),
                    f"train.schedule.milestones {outside} ({schedule.unit}s) lie outside {run}",
                )
            )
    warmup = train.warmup
    if warmup.length and warmup.unit != unit and beyond(warmup.length, warmup.unit):
        problems.append(
            (
                ("train", "warmup", "length"),
                f"train.warmup.length {warmup.length} {warmup.unit}s is not shorter than {run}",
            )
        )
    return problems


def generated_counts(spec: JobSpec) -> tuple[int, int, int] | None:
    """(train images, val images, classes) of a synthetic source, known without files."""
    source = spec.data.source
    if isinstance(source, SyntheticSource):
        classes = source.num_classes
        return classes * source.train_per_class, classes * source.val_per_class, classes
    return None
