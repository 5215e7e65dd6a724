"""scikit-learn's handwritten digits, written once as RGB PNG files in ImageNet's layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from resnetctl.data.imagefolder import DatasetLayout, layout_for_folder, publish_tree
from resnetctl.footprint import cache_root
from resnetctl.spec.data import DigitsSource

#: Seed of the stratified train/val split; part of the cache key, so changing it re-writes.
SPLIT_SEED = 0
# Bump when the written files change (interpolation, naming), so stale caches are not reused.
_FORMAT = 1
NUM_IMAGES = 1797


def digits_split(val_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images 8x8 in 0-16, targets, train indices, val indices) of the fixed stratified split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    index = np.arange(len(digits.target))
    train, val = train_test_split(
        index, test_size=val_fraction, stratify=digits.target, random_state=SPLIT_SEED
    )
    return digits.images, digits.target, np.sort(train), np.sort(val)


def write_digits(dest: Path, image_size: int, val_fraction: float) -> None:
    """Write `dest/{train,val}/<digit>/<index>.png`, each scan upsampled to image_size."""
    from PIL import Image

    images, targets, train, val = digits_split(val_fraction)
    for split, indices in (("train", train), ("val", val)):
        for i in indices:
            folder = dest / split / str(int(targets[i]))
            folder.mkdir(parents=True, exist_ok=True)
            grey = np.round(images[i] * (255.0 / 16.0)).astype(np.uint8)
            img = Image.fromarray(grey, mode="L").resize(
                (image_size, image_size), Image.Resampling.BILINEAR
            )
            img.convert("RGB").save(folder / f"{int(i):04d}.png")


def prepare_digits(source: DigitsSource) -> DatasetLayout:
    """Write the digits once into `<cache>/digits-<size>-<split-hash>/` and return the layout."""
    split_key = hashlib.sha256(
        f"{_FORMAT}:{source.val_fraction!r}:{SPLIT_SEED}".encode()
    ).hexdigest()[:10]
    cache = cache_root(source.cache_dir)
    root = cache / f"digits-{source.image_size}-{split_key}"
    publish_tree(root, lambda tmp: write_digits(tmp, source.image_size, source.val_fraction))
    # The files were written by us: header checks suffice, a full decode would only cost time.
    return layout_for_folder(root, cache=cache, full_decode=False)
