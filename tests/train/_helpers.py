"""Tiny specs, models and in-memory loaders for the training tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnetctl.spec import JobSpec

NUM_CLASSES = 4
IMAGE = 8
# The paper's CIFAR input on 16x16 synthetic images: pad 2, random 16x16 crop, flip.
PIPELINE: dict[str, Any] = {"kind": "cifar", "crop": 16, "pad": 2}


def job_spec(train: dict[str, Any] | None = None, **sections: Any) -> JobSpec:
    """A valid JobSpec for cifar_resnet8 on 16x16 synthetic images; `train` fields override."""
    train_fields: dict[str, Any] = {
        "epochs": 2,
        "batch_size_per_worker": 8,
        "base_lr": 0.1,
        "lr_reference_batch": 8,
        "schedule": {"kind": "constant"},
    }
    train_fields.update(train or {})
    spec: dict[str, Any] = {
        "name": "test-job",
        "model": {"name": "cifar_resnet8"},
        "data": {
            "source": {
                "kind": "synthetic",
                "num_classes": NUM_CLASSES,
                "train_per_class": 8,
                "val_per_class": 2,
                "image_size": [16, 16],
            },
            "pipeline": PIPELINE,
            "threads": 1,
        },
        "train": train_fields,
    }
    spec.update(sections)
    return JobSpec.model_validate(spec)


def tiny_model() -> nn.Module:
    """Conv + BN + linear: enough to exercise BN exemption, DDP and checkpoints in ms."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, NUM_CLASSES),
    )


def batches(n: int, batch: int = 8, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` random batches of 8x8 images with labels (a list: has len, re-iterable)."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(batch, 3, IMAGE, IMAGE, generator=gen),
            torch.randint(0, NUM_CLASSES, (batch,), generator=gen),
        )
        for _ in range(n)
    ]


NO_COLOUR = {"brightness": 0, "contrast": 0, "saturation": 0, "pca_lighting": 0}
# The paper's ImageNet input scaled down to 16x16 synthetic images.
IMAGENET_DATA: dict[str, Any] = {
    "source": {
        "kind": "synthetic",
        "num_classes": NUM_CLASSES,
        "train_per_class": 8,
        "val_per_class": 3,
        "image_size": [16, 16],
    },
    "pipeline": {
        "kind": "imagenet",
        "crop": 8,
        "scale_range": [8, 12],
        "val_resize": 10,
        "val_crop": 8,
        "color": NO_COLOUR,
    },
    "threads": 1,
}
FINAL_EVAL = {"final_eval": {"protocol": "ten_crop"}}


def ten_crop_batches(n: int, seed: int = 5) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`n` random batches of 6 images' 10 views (6 x 10 x 3 x 8 x 8) with labels."""
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(6, 10, 3, IMAGE, IMAGE, generator=gen),
            torch.randint(0, NUM_CLASSES, (6,), generator=gen),
        )
        for _ in range(n)
    ]


class FakeSession:
    """Ray Train's side of the loop, in memory: keeps every report and copies each reported
    checkpoint directory into `storage` (the loop deletes its temporary directory)."""

    def __init__(self, storage: Path, resume_from: Path | None = None) -> None:
        self.storage = storage
        self.resume_from = resume_from
        self.reports: list[tuple[dict[str, Any], Path | None, str]] = []

    @contextmanager
    def checkpoint_dir(self) -> Iterator[str | None]:
        yield None if self.resume_from is None else str(self.resume_from)

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        kept = None
        if checkpoint_dir is not None:
            kept = self.storage / name
            shutil.copytree(checkpoint_dir, kept)
            shutil.rmtree(checkpoint_dir)  # the session owns it, as Ray Train does
        self.reports.append((dict(metrics), kept, name))

    @property
    def epoch_reports(self) -> list[tuple[dict[str, Any], Path | None, str]]:
        """The reports of finished epochs (not step, checkpoint or restore reports)."""
        return [report for report in self.reports if "epoch" in report[0]]

    @property
    def checkpoints(self) -> list[Path]:
        """Reported checkpoint directories, oldest first."""
        return [path for _, path, _ in self.reports if path is not None]
