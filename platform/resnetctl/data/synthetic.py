"""Random JPEG images whose content depends on the class, for tests and benchmarks."""

from __future__ import annotations

import colorsys
import hashlib
import math
from pathlib import Path

import numpy as np

from resnetctl.data.imagefolder import DatasetLayout, layout_for_folder, publish_tree
from resnetctl.footprint import cache_root
from resnetctl.spec.data import SyntheticSource

_FORMAT = 2
_SPLITS = ("train", "val")


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Zero-mean HxWx3 texture with energy at several scales, like the clutter of photographs
    (pure stripes compress to a third of a real JPEG's size and decode faster than one)."""
    from PIL import Image

    out = np.zeros((height, width, 3), np.float32)
    scales = ((4, 18.0), (16, 14.0), (64, 14.0), (max(1, height // 2), 24.0))
    for cells, amplitude in (sc for sc in scales if sc[0] <= max(1, height // 2)):
        small = rng.normal(0.0, amplitude, size=(3, cells, max(1, cells * width // height)))
        for ch in range(3):
            field = Image.fromarray(small[ch].astype(np.float32), mode="F")
            out[..., ch] += np.asarray(field.resize((width, height), Image.Resampling.BICUBIC))
    return out


def synthetic_image(
    rng: np.random.Generator, label: int, num_classes: int, height: int, width: int
) -> np.ndarray:
    """An HxWx3 uint8 image: the class's hue and stripe orientation, random phase, texture.

    Colour and orientation both encode the class, so a tiny network learns it in a few steps;
    the multi-scale texture and pixel noise keep JPEG sizes and decode costs near photographs'.
    """
    hue = label / num_classes
    base = np.array(colorsys.hsv_to_rgb(hue, 0.65, 0.8)) * 255.0
    angle = math.pi * label / num_classes
    period = max(4.0, min(height, width) / rng.uniform(3.0, 6.0))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi)
    stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period) + phase)
    img = base[None, None, :] * (1.0 + 0.25 * stripes[..., None]) * rng.uniform(0.8, 1.2)
    img = img + _texture(rng, height, width) + rng.normal(0.0, 6.0, size=(height, width, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def class_name(label: int) -> str:
    """Folder name of class `label` (zero-padded so that sorting keeps label order)."""
    return f"class_{label:05d}"


def write_synthetic(dest: Path, source: SyntheticSource) -> None:
    """Write `dest/{train,val}/class_NNNNN/NNNNNN.jpg`, every image a function of the seed."""
    from PIL import Image

    height, width = source.image_size
    per_split = {"train": source.train_per_class, "val": source.val_per_class}
    for split_id, split in enumerate(_SPLITS):
        for label in range(source.num_classes):
            folder = dest / split / class_name(label)
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_split[split]):
                rng = np.random.default_rng([source.seed, split_id, label, i])
                pixels = synthetic_image(rng, label, source.num_classes, height, width)
                Image.fromarray(pixels).save(folder / f"{i:06d}.jpg", quality=90)


def prepare_synthetic(source: SyntheticSource) -> DatasetLayout:
    """Write the images once into `<cache>/synthetic-<HxW>-<key>/` and return the layout."""
    fields = (
        _FORMAT,
        source.num_classes,
        source.train_per_class,
        source.val_per_class,
        tuple(source.image_size),
        source.seed,
    )
    key = hashlib.sha256(repr(fields).encode()).hexdigest()[:10]
    cache = cache_root(source.cache_dir)
    height, width = source.image_size
    root = cache / f"synthetic-{height}x{width}-{key}"
    publish_tree(root, lambda tmp: write_synthetic(tmp, source))
    return layout_for_folder(root, cache=cache, full_decode=False)
