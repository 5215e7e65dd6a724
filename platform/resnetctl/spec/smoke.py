"""`submit --smoke`: the same job, shrunk to run end to end on this machine in a minute or two.

A cluster recipe is tried before GPUs are paid for: the same model (depth, shortcut, block),
the same input pipeline and augmentation, optimiser, schedule kinds, checkpointing and MLflow
tracking, on synthetic images at the job's input size, for two epochs of a few steps, with
workers and devices scaled to what this machine has. NVIDIA's DeepLearningExamples keep a
synthetic-data mode for the same reason.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import ValidationError

from resnetctl.spec.errors import SpecError, SpecIssue
from resnetctl.spec.job import JobSpec

#: Images per worker and step, optimiser steps per epoch, epochs, classes of the smoke run.
BATCH = 4
STEPS_PER_EPOCH = 2
EPOCHS = 2
CLASSES = 4
#: CPU workers at most: two ranks are enough to exercise DDP's all-reduce.
CPU_WORKERS = 2


def smoke_spec(
    spec: JobSpec, *, cpus: int, cuda_devices: int, image_size: int | None = None
) -> JobSpec:
    """`spec` shrunk to a smoke run on a machine with `cpus` usable CPUs and `cuda_devices`
    GPUs: synthetic images at the pipeline's crop size, `EPOCHS` epochs of `STEPS_PER_EPOCH`
    steps of `BATCH` images per worker, and `<name>-smoke` as its name. `image_size` scales
    the pipeline's geometry (crop, resize, pad) down to that crop for a faster run.

    Raises `SpecError` if the shrunk spec (or `image_size`) does not validate.
    """
    data = spec.model_dump(mode="json")
    if image_size is not None:
        _scale_pipeline(data["data"]["pipeline"], image_size)
    res, train = data["resources"], data["train"]

    use_gpu = bool(res["use_gpu"]) and cuda_devices > 0
    limit = cuda_devices if use_gpu else CPU_WORKERS
    # An elastic range shrinks to a fixed count: the smoke run checks the job, not resizes.
    top = res["workers"]["max"] if isinstance(res["workers"], dict) else res["workers"]
    workers = max(1, min(top, limit, cpus))
    res.update(workers=workers, use_gpu=use_gpu, cpus_per_worker=1.0, gpus_per_worker=1.0)

    size = data["data"]["pipeline"]["crop"]
    images = STEPS_PER_EPOCH * BATCH * workers
    source = spec.data.source
    data["data"]["source"] = {
        "kind": "synthetic",
        "num_classes": CLASSES,
        "train_per_class": math.ceil(images / CLASSES),
        # One validation batch per worker.
        "val_per_class": math.ceil(BATCH * workers / CLASSES),
        "image_size": [size, size],
        "seed": spec.train.seed,
        "cache_dir": getattr(source, "cache_dir", None) and str(source.cache_dir),
    }
    data["data"]["threads"] = 1
    if not use_gpu and data["data"]["device"] == "gpu":
        data["data"]["device"] = "cpu"

    if train["global_batch_size"] is not None:
        train["global_batch_size"] = BATCH * workers
    else:
        train["batch_size_per_worker"] = BATCH
    total_steps = EPOCHS * STEPS_PER_EPOCH
    if train["epochs"] is not None:
        train["epochs"] = EPOCHS
    else:
        train["iterations"] = total_steps
    length = {"epoch": EPOCHS, "iteration": total_steps}
    schedule = train["schedule"]
    if schedule["kind"] == "step":
        # Keep the schedule's shape: as many rate drops as fit, the last ones of the run.
        points = list(range(1, length[schedule["unit"]]))
        schedule["milestones"] = points[-len(schedule["milestones"]) :]
    if train["warmup"]["length"]:
        train["warmup"].update(length=1, unit="iteration")
    if not use_gpu:
        # What only GPUs run: fp16 needs a gradient scaler on CUDA, SyncBatchNorm has no CPU
        # kernel. bf16 and channels_last run on CPU and stay.
        if train["precision"] == "fp16":
            train["precision"] = "fp32"
        train["sync_bn"] = False

    data["checkpoint"].update(every_n_epochs=1, resume_from=None)
    data["failure"]["max_failures"] = 0  # a smoke test that fails should fail at once
    data["name"] = _suffixed(spec.name)
    tracking = data["tracking"]
    if tracking["run_name"]:
        tracking["run_name"] = _suffixed(tracking["run_name"])
    tracking["tags"] = {**tracking["tags"], "resnetctl.smoke": "true"}
    return _validated(spec, data)


def _scale_pipeline(pipeline: dict[str, Any], size: int) -> None:
    """Every length of the pipeline times size / crop, so the augmentation keeps its shape."""
    factor = size / pipeline["crop"]

    def scaled(value: int) -> int:
        return max(size, round(value * factor))

    pipeline["crop"] = size
    if pipeline["kind"] == "cifar":
        pipeline["pad"] = round(pipeline["pad"] * factor)
        return
    pipeline["scale_range"] = [scaled(v) for v in pipeline["scale_range"]]
    pipeline["val_crop"] = scaled(pipeline["val_crop"])
    pipeline["val_resize"] = max(pipeline["val_crop"], scaled(pipeline["val_resize"]))


def _suffixed(name: str) -> str:
    return f"{name[:122]}-smoke"


def _validated(spec: JobSpec, data: dict[str, Any]) -> JobSpec:
    try:
        smoke = JobSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(
            [
                SpecIssue("--smoke", ".".join(map(str, err["loc"])), str(err["msg"]))
                for err in exc.errors()
            ]
        ) from None
    smoke._locator = spec._locator  # errors found later still point into the file
    return smoke
