"""Checks that need the machine a job is launched from: its GPUs and its data folders.

Kept apart from validation: a spec bound for a cluster may name paths and GPUs that only the
cluster has.
"""

from __future__ import annotations

from resnetctl.spec.data import ImageFolderSource, ShardsSource
from resnetctl.spec.errors import SpecError, SpecIssue
from resnetctl.spec.feasibility import count_problems, image_problems
from resnetctl.spec.job import JobSpec


def check_local(spec: JobSpec, *, cuda_devices: int | None = None, cpus: int | None = None) -> None:
    """Raise `SpecError` if this machine cannot run `spec`: CPUs or GPUs too few for its
    workers on the embedded Ray, or data folders missing."""
    issues: list[SpecIssue] = []
    res = spec.resources
    if cpus is None:
        from resnetctl import host

        cpus = host.usable_cpus()
    # The embedded Ray is one node of `cpus` CPUs and never grows: as many workers fit as
    # whole bundles of cpus_per_worker (the test `launch.capacity` applies once it started).
    # An elastic run starts once its fewest workers fit.
    if int(cpus // res.cpus_per_worker) < res.min_workers:
        issues.append(
            SpecIssue(
                spec.where("resources", "workers"),
                "resources.workers",
                f"{res.min_workers} workers x {res.cpus_per_worker:g} CPUs (cpus_per_worker) do "
                f"not fit the embedded Ray on this machine, which may use {cpus} CPUs; lower "
                "resources.workers or resources.cpus_per_worker, or submit to a cluster "
                "with --address",
            )
        )
    if spec.resources.use_gpu:
        if cuda_devices is None:
            import torch

            cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        needed = spec.resources.min_workers * spec.resources.gpus_per_worker
        if cuda_devices < needed:
            issues.append(
                SpecIssue(
                    spec.where("resources", "use_gpu"),
                    "resources.use_gpu",
                    f"the job needs {needed:g} GPUs but this machine has {cuda_devices}; "
                    "set resources.use_gpu: false or submit to a cluster with --address",
                )
            )
    source = spec.data.source
    # A bucket is listed (and its listing errors reported) when the data set is prepared.
    if isinstance(source, ImageFolderSource) and not isinstance(source.root, str):
        for split in (source.train_dir, source.val_dir):
            folder = source.root / split
            where = spec.where("data", "source", "root")
            if not folder.is_dir():
                issues.append(
                    SpecIssue(where, "data.source.root", f"data folder {folder} does not exist")
                )
            elif not any(child.is_dir() for child in folder.iterdir()):
                issues.append(
                    SpecIssue(
                        where,
                        "data.source.root",
                        f"data folder {folder} has no class sub-folders "
                        f"(expected {folder}/<class>/*)",
                    )
                )
    if isinstance(source, ShardsSource) and not isinstance(source.root, str):
        manifest = source.root / "manifest.json"
        if not manifest.is_file():
            issues.append(
                SpecIssue(
                    spec.where("data", "source", "root"),
                    "data.source.root",
                    f"{manifest} does not exist: data.source.kind shards reads a folder "
                    "written by `resnetctl data pack`",
                )
            )
    if issues:
        raise SpecError(issues)


def check_data_counts(spec: JobSpec, train_images: int, val_images: int, classes: int) -> None:
    """Raise `SpecError` if the data set, now that its size is known, cannot feed `spec`:
    a batch larger than a worker's shard, too few validation images, fewer outputs than
    classes, milestones or warm-up beyond the run."""
    problems = count_problems(spec, train_images, val_images, classes)
    if problems:
        raise SpecError(
            [SpecIssue(spec.where(*path), ".".join(path), message) for path, message in problems]
        )


def check_image_size(spec: JobSpec, size: tuple[int, int]) -> None:
    """Raise `SpecError` if images of (height, width) `size` cannot feed the pipeline."""
    problems = image_problems(spec, size)
    if problems:
        raise SpecError(
            [SpecIssue(spec.where(*path), ".".join(path), message) for path, message in problems]
        )
