"""The figures of a job before it runs: model size, batches, steps and training FLOPs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from resnetctl.spec import JobSpec
from resnetctl.spec.steps import steps_per_epoch, total_steps

__all__ = ["JobPlan", "WorkerPlan", "make_plan", "steps_per_epoch"]


@dataclass(frozen=True)
class WorkerPlan:
    """How an elastic run trains at one worker count of its range."""

    workers: int
    per_worker_batch: int
    accumulation: int
    global_batch: int
    peak_lr: float
    steps_per_epoch: int | None  # None: the data set is where the job runs


@dataclass(frozen=True)
class JobPlan:
    """What a job will do, computed from its spec, the model registry and the data set."""

    name: str
    model: str
    params: int | None  # None: the classes, and so the head, come from data not read here
    macs_per_image: int | None
    input_size: int
    num_classes: int | None
    workers: int  # the plan's count: resources.max_workers of an elastic range
    device: str
    per_worker_batch: int
    global_batch: int
    peak_lr: float
    train_images: int | None  # None: the data set is where the job runs (a cluster's)
    val_images: int | None
    steps_per_epoch: int | None
    epochs: float | None
    total_steps: int | None
    training_flops: float | None
    accumulation: int = 1
    # An elastic run: its policy and the split at each end of its range (most workers first).
    elastic_policy: str | None = None
    ends: tuple[WorkerPlan, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready dict."""
        return asdict(self)


def make_plan(spec: JobSpec, *, data: bool = True) -> JobPlan:
    """Compute the plan; prepares (and caches) the data set to count its images. Without
    `data` (a job for a cluster, whose data is there) the figures that need the data set's
    size, or its classes when the spec does not say, are None."""
    import torch

    from resnetctl.data import prepare_dataset
    from resnetctl.models import count_macs, count_parameters, create_model

    layout = prepare_dataset(spec.data) if data else None
    num_classes = spec.model.num_classes or (len(layout.classes) if layout else None)
    size = spec.pipeline.crop
    params = macs = None
    if num_classes is not None:
        with torch.device("meta"):  # shapes only: counting needs no weights or arithmetic
            model = create_model(spec.model.name, **spec.model.create_options(num_classes))
        params, macs = count_parameters(model), count_macs(model, size)
    plan = spec.split()
    workers, per_worker, global_batch = plan.workers, plan.per_worker_batch, plan.global_batch
    per_epoch = total = epochs = flops = None
    length, unit = spec.train.length
    if layout is not None:
        per_epoch = steps_per_epoch(layout.train_files, per_worker, workers, plan.accumulation)
        total = total_steps(spec.train, per_epoch)
        epochs = length if unit == "epoch" else total / per_epoch
        if macs is not None:
            # Forward is 2 FLOPs per multiply-add; backward costs about twice the forward.
            flops = float(3 * 2 * macs * global_batch * total)
    elif unit == "epoch":
        epochs = length
    return JobPlan(
        name=spec.name,
        model=spec.model.name or "",
        params=params,
        macs_per_image=macs,
        input_size=size,
        num_classes=num_classes,
        workers=workers,
        device=spec.resources.device,
        per_worker_batch=per_worker,
        global_batch=global_batch,
        peak_lr=plan.peak_lr,
        train_images=layout.train_files if layout else None,
        val_images=layout.val_files if layout else None,
        steps_per_epoch=per_epoch,
        epochs=epochs,
        total_steps=total,
        training_flops=flops,
        accumulation=plan.accumulation,
        elastic_policy=spec.resources.elastic_policy if spec.resources.elastic else None,
        ends=_ends(spec, layout.train_files if layout is not None else None),
    )


def _ends(spec: JobSpec, train_images: int | None) -> tuple[WorkerPlan, ...]:
    """The splits at `max` and `min` of an elastic range; none for a fixed count."""
    res = spec.resources
    if not res.elastic:
        return ()
    ends = []
    for count in (res.max_workers, res.min_workers):
        split = spec.split(count)
        per_epoch = None
        if train_images is not None:
            per_epoch = steps_per_epoch(
                train_images, split.per_worker_batch, count, split.accumulation
            )
        ends.append(
            WorkerPlan(
                workers=count,
                per_worker_batch=split.per_worker_batch,
                accumulation=split.accumulation,
                global_batch=split.global_batch,
                peak_lr=split.peak_lr,
                steps_per_epoch=per_epoch,
            )
        )
    return tuple(ends)
