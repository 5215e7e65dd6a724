"""What goes into which shard, decided once, before any image is read.

The image folder is scanned with the rules `data.source.kind: imagefolder` uses (class
folders, hidden names, extensions, the cheap header checks; a bucket is listed, its objects not
opened), each split's samples are shuffled with the seed (so every shard, and every rank's
share of them, is a random mix of the classes) and cut, in that order, into shards of about
the target size. The plan is written beside the shards before packing starts, so an
interrupted pack resumes with the same plan: a shard's content depends on the plan alone.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnetctl.data.imagefolder import (
    DataError,
    SplitScan,
    check_class_sets,
    scan_split,
)
from resnetctl.data.shards.manifest import SPLITS
from resnetctl.storage import StorageError, StoragePath, is_uri

PLAN_FORMAT = 1
#: A sample's tar member: 512 bytes of header, the data in whole 512-byte blocks.
_BLOCK = 512
#: The label member of every sample (header and one block).
_LABEL_MEMBER = 2 * _BLOCK
#: What a tar adds after its members: two zero blocks, then padding to a whole record
#: (`tarfile.RECORDSIZE`, 20 blocks) at most.
_TAR_END = 2 * _BLOCK + 20 * _BLOCK
# DALI's index is whitespace-separated and a key ends at its first dot: keys keep letters,
# digits, '-', '_' and '/' of the file's path and turn everything else into '_'.
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-/]")


@dataclass(frozen=True)
class PlannedShard:
    """One shard to write: its files, as (path relative to the split folder, label, bytes,
    key in the tar)."""

    split: str
    number: int
    files: tuple[tuple[str, int, int, str], ...]

    @property
    def name(self) -> str:
        """`train/000012`: the tar and index paths without their extension."""
        return f"{self.split}/{self.number:06d}"


@dataclass(frozen=True)
class PackOptions:
    """What decides a pack's content: resuming needs the same."""

    source: str
    train_dir: str = "train"
    val_dir: str = "val"
    seed: int = 0
    shard_bytes: int = 256 << 20

    def split_dir(self, split: str) -> str:
        """The source's sub-folder of `split`."""
        return {"train": self.train_dir, "val": self.val_dir}[split]


@dataclass(frozen=True)
class PackPlan:
    """The shards to write, and what the scan left out."""

    options: PackOptions
    classes: tuple[str, ...]
    label_digits: int
    shards: tuple[PlannedShard, ...]
    #: Files of the source the scan left out: (path relative to the source, reason).
    skipped: tuple[tuple[str, str], ...] = field(default=())

    def to_bytes(self) -> bytes:
        """The plan, gzipped JSON (ImageNet's is a few MB)."""
        payload = {
            "format": PLAN_FORMAT,
            "options": asdict(self.options),
            "classes": list(self.classes),
            "label_digits": self.label_digits,
            "shards": [[s.split, s.number, [list(f) for f in s.files]] for s in self.shards],
            "skipped": [list(item) for item in self.skipped],
        }
        return gzip.compress(json.dumps(payload).encode(), mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> PackPlan:
        """Parse `to_bytes` output; DataError naming `where` if it is not a plan."""
        try:
            payload = json.loads(gzip.decompress(data))
            if payload.get("format") != PLAN_FORMAT:
                raise ValueError(f"format {payload.get('format')!r}")
            return cls(
                options=PackOptions(**payload["options"]),
                classes=tuple(payload["classes"]),
                label_digits=int(payload["label_digits"]),
                shards=tuple(
                    PlannedShard(split, int(number), tuple(tuple(f) for f in files))  # type: ignore[misc]
                    for split, number, files in payload["shards"]
                ),
                skipped=tuple(tuple(item) for item in payload["skipped"]),  # type: ignore[misc]
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{where}: not a pack plan ({exc})") from None


def sample_key(relative: str) -> str:
    """The tar key of the file at `relative` (below its split folder): the path without its
    extension, made safe for DALI's index."""
    stem = relative.rsplit(".", 1)[0] if "." in relative.rsplit("/", 1)[-1] else relative
    return _UNSAFE.sub("_", stem)


def _scan(options: PackOptions, split: str) -> tuple[SplitScan, list[int]]:
    """The split's scan and each usable file's size in bytes."""
    where = options.split_dir(split)
    if is_uri(options.source):
        from resnetctl.data.objectstore import list_objects, scan_bucket_split

        directory = StoragePath.of(options.source) / where
        objects = list_objects(directory, None, refresh=True)
        scan = scan_bucket_split(directory, cache=None, objects=objects)
        sizes = dict(objects)
        return scan, [sizes[rel] for rel, _ in scan.files]
    directory = Path(options.source) / where
    # Cheap checks here; every image is decoded when its shard is written.
    scan = scan_split(directory, cache=None, full_decode=False)
    return scan, [os.stat(directory / rel).st_size for rel, _ in scan.files]


def make_plan(options: PackOptions) -> PackPlan:
    """Scan the source and cut each split's shuffled samples into shards of about
    `options.shard_bytes` (at least one sample each). DataError for an unusable source."""
    if not is_uri(options.source) and not Path(options.source).is_dir():
        raise DataError(f"{options.source}: no such folder")
    try:
        scans = {split: _scan(options, split) for split in SPLITS}
    except StorageError as exc:
        raise DataError(str(exc)) from None
    check_class_sets(scans["train"][0], scans["val"][0])
    classes = scans["train"][0].classes
    label = {name: i for i, name in enumerate(classes)}
    shards: list[PlannedShard] = []
    skipped: list[tuple[str, str]] = []
    for split_id, split in enumerate(SPLITS):
        scan, sizes = scans[split]
        prefix = options.split_dir(split)
        skipped += [(f"{prefix}/{rel}", why) for rel, why in scan.rejected]
        empty = [c for c, n in scan.count_per_class().items() if n == 0]
        if empty:
            raise DataError(
                f"class folder(s) without a usable image in {prefix}: " + ", ".join(empty[:10])
            )
        order = np.random.default_rng([options.seed, split_id]).permutation(len(scan.files))
        number = 0
        keys: set[str] = set()
        current: list[tuple[str, int, int, str]] = []
        current_bytes = 0
        for i in order:
            rel, cls = scan.files[i]
            size = sizes[i]
            key = sample_key(rel)
            while key in keys:  # two names that differ only in unsafe characters
                key += "_"
            keys.add(key)
            member = _BLOCK + -(-size // _BLOCK) * _BLOCK + _LABEL_MEMBER
            if current and current_bytes + member > options.shard_bytes - _TAR_END:
                shards.append(PlannedShard(split, number, tuple(current)))
                number, current, current_bytes = number + 1, [], 0
            current.append((rel, label[cls], size, key))
            current_bytes += member
        if current:
            shards.append(PlannedShard(split, number, tuple(current)))
    digits = len(str(max(len(classes) - 1, 0)))
    return PackPlan(options, classes, digits, tuple(shards), tuple(sorted(skipped)))


def describe_plan(plan: PackPlan) -> dict[str, Any]:
    """Counts of a plan, for messages."""
    return {
        split: {
            "shards": sum(1 for s in plan.shards if s.split == split),
            "images": sum(len(s.files) for s in plan.shards if s.split == split),
        }
        for split in SPLITS
    }
