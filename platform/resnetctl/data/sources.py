"""Data sources: a registry from a source's `kind` to the function that prepares it on disk."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from resnetctl.data.digits import prepare_digits
from resnetctl.data.imagefolder import DataError, DatasetLayout, layout_for_folder
from resnetctl.data.shards.manifest import ShardLayout, prepare_shards
from resnetctl.data.synthetic import prepare_synthetic
from resnetctl.footprint import cache_root
from resnetctl.spec.data import DataSpec, ImageFolderSource

Preparer = Callable[[Any], DatasetLayout | ShardLayout]


def prepare_imagefolder(source: ImageFolderSource) -> DatasetLayout:
    """Scan and check the user's image folder (the scan is cached under the cache folder)."""
    return layout_for_folder(source.root, source.train_dir, source.val_dir, cache=cache_root())


#: source kind -> preparer. A new source registers here and nowhere else.
PREPARERS: dict[str, Preparer] = {
    "imagefolder": prepare_imagefolder,
    "digits": prepare_digits,
    "synthetic": prepare_synthetic,
    "shards": prepare_shards,
}


def prepare_dataset(spec: DataSpec) -> DatasetLayout | ShardLayout:
    """Make `spec.source` available on disk and return its layout.

    Idempotent and safe to call from several processes at once: generated data sets are written
    once into the cache, image folders are scanned once per change of their folders' mtimes,
    packed shards are known by their manifest (shards in a bucket are copied to the node when
    a loader first reads them, see `data/shards/cache.py`).
    """
    kind = spec.source.kind
    try:
        preparer = PREPARERS[kind]
    except KeyError:
        raise DataError(f"unknown data source kind {kind!r}; known: {sorted(PREPARERS)}") from None
    return preparer(spec.source)
