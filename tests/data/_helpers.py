"""Tiny image folders whose pixels say what they are, for the data tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from resnetctl.spec.data import (
    CifarPipeline,
    ColorAugment,
    DataSpec,
    ImageFolderSource,
    ImageNetPipeline,
)

NO_COLOR = ColorAugment(brightness=0, contrast=0, saturation=0, pca_lighting=0)
IDENTITY = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}


def save(path: Path, pixels: np.ndarray) -> Path:
    """Write an HxWx3 uint8 array (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def index_pixels(index: int, size: int = 8) -> np.ndarray:
    """A flat image encoding `index` in its red (index % 256) and green (index // 256) values."""
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[..., 0] = index % 256
    pixels[..., 1] = index // 256
    pixels[..., 2] = 77
    return pixels


def decode_indices(images: torch.Tensor) -> list[int]:
    """Inverse of `index_pixels` for images normalised with mean 0 and std 1 (NCHW)."""
    red = images[:, 0].mean(dim=(1, 2)).round().long()
    green = images[:, 1].mean(dim=(1, 2)).round().long()
    return (green * 256 + red).tolist()


def index_folder(root: Path, train: int, val: int, classes: int = 2) -> Path:
    """`root/{train,val}/c<k>/<index>.png`; indices 0..n-1 per split, classes round-robin."""
    for split, count in (("train", train), ("val", val)):
        for i in range(count):
            save(root / split / f"c{i % classes}" / f"{i:04d}.png", index_pixels(i))
    return root


def gradient_pixels(height: int, width: int) -> np.ndarray:
    """Grey, dark on the left and bright on the right: a mirrored copy is easy to tell apart."""
    row = np.linspace(40, 200, width)
    return np.repeat(np.broadcast_to(row, (height, width))[..., None], 3, axis=2)


def smooth_pixels(height: int, width: int, seed: int) -> np.ndarray:
    """Low-frequency colour waves: resampling differences stay small, positions stay telling."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [
        128 + 100 * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
        for fy, fx, phase in rng.uniform([0.3, 0.3, 0], [0.8, 0.8, 6.28], size=(3, 3))
    ]
    return np.stack(channels, axis=-1)


def cifar_spec(root: Path, **pipeline: object) -> DataSpec:
    """Image folder + CIFAR pipeline that leaves 8x8 pixels untouched unless asked."""
    fields: dict[str, object] = {"pad": 0, "crop": 8, "flip": False, **IDENTITY}
    fields.update(pipeline)
    return DataSpec(
        source=ImageFolderSource(root=root), pipeline=CifarPipeline(**fields), threads=1
    )


def imagenet_spec(root: Path, **pipeline: object) -> DataSpec:
    """Image folder + a small ImageNet pipeline (crop 24, scale 24-40, val 32/24)."""
    fields: dict[str, object] = {
        "crop": 24,
        "scale_range": (24, 40),
        "val_resize": 32,
        "val_crop": 24,
    }
    fields.update(pipeline)
    return DataSpec(
        source=ImageFolderSource(root=root), pipeline=ImageNetPipeline(**fields), threads=2
    )
