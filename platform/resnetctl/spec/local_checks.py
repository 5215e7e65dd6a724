"""Checks that need the machine a job is launched from: its GPUs and its data folders.

Kept apart from validation: a spec bound for a cluster may name paths and GPUs that only the
cluster has.
"""

from __future__ import annotations

from resnetctl.spec.data import ImageFolderSource
from resnetctl.spec.errors import SpecError, SpecIssue
from resnetctl.spec.job import JobSpec


def check_local(spec: JobSpec, *, cuda_devices: int | None = None) -> None:
    """Raise `SpecError` if this machine cannot run `spec`: GPUs or data folders missing."""
    issues: list[SpecIssue] = []
    if spec.resources.use_gpu:
        if cuda_devices is None:
            import torch

            cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
        needed = spec.resources.workers * spec.resources.gpus_per_worker
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
    if issues:
        raise SpecError(issues)
