"""`manifest.json`: everything a run needs to know about a packed data set, in one file.

`resnetctl data pack` writes it last, beside the shards; a run reads it and nothing else at
start-up (no listing of a bucket). It names the classes (labels are indices into them), each
split's shards with their image counts, sizes and SHA-256, the images per class, the smallest
and largest image, the files left out and why, and digests: a split's digest covers its
classes and its shards' bytes in order, the data set's covers both splits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from resnetctl.data.imagefolder import DataError, Split
from resnetctl.storage import StorageError, StoragePath

MANIFEST = "manifest.json"
FORMAT = 1
SPLITS: tuple[Split, ...] = ("train", "val")


@dataclass(frozen=True)
class ShardEntry:
    """One tar shard of a split and its DALI index, by path relative to the data set's root."""

    tar: str
    index: str
    images: int
    bytes: int
    sha256: str


@dataclass(frozen=True)
class SplitEntry:
    """A split: its shards in reading order, image counts, digest."""

    images: int
    per_class: dict[str, int]
    digest: str
    shards: tuple[ShardEntry, ...]


@dataclass(frozen=True)
class Manifest:
    """The parsed `manifest.json`."""

    source: str  # the image folder it was packed from
    classes: tuple[str, ...]
    label_digits: int  # width of the zero-padded ASCII label of every sample
    splits: dict[str, SplitEntry]
    digest: str
    seed: int  # of the shuffle that ordered the samples
    shard_bytes: int  # the target shard size
    #: Smallest and largest image: {"min": [height, width], "max": [height, width]}.
    image_size: dict[str, list[int]] = field(default_factory=dict)
    #: Files of the source left out: {"path": relative to the source, "reason": ...}.
    skipped: tuple[dict[str, str], ...] = ()

    def to_json(self) -> str:
        """The manifest's text (stable key order: the same pack writes the same bytes)."""
        payload = {"format": FORMAT, **asdict(self)}
        payload["classes"] = list(self.classes)
        return json.dumps(payload, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        """Parse a manifest; DataError naming `where` and the field at fault."""
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{where}: not JSON ({exc})") from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else None
            raise DataError(
                f"{where}: format {found!r}, expected {FORMAT} (a manifest written by "
                "`resnetctl data pack`)"
            )
        try:
            splits = {
                name: SplitEntry(
                    images=int(entry["images"]),
                    per_class={str(k): int(v) for k, v in entry["per_class"].items()},
                    digest=str(entry["digest"]),
                    shards=tuple(ShardEntry(**shard) for shard in entry["shards"]),
                )
                for name, entry in payload["splits"].items()
            }
            manifest = cls(
                source=str(payload["source"]),
                classes=tuple(str(c) for c in payload["classes"]),
                label_digits=int(payload["label_digits"]),
                splits=splits,
                digest=str(payload["digest"]),
                seed=int(payload["seed"]),
                shard_bytes=int(payload["shard_bytes"]),
                image_size=dict(payload.get("image_size") or {}),
                skipped=tuple(payload.get("skipped") or ()),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{where}: malformed manifest ({type(exc).__name__}: {exc})") from None
        for split in SPLITS:
            entry = manifest.splits.get(split)
            if entry is None or not entry.shards:
                raise DataError(f"{where}: no {split} shards")
            if sum(s.images for s in entry.shards) != entry.images:
                raise DataError(f"{where}: {split}: shard image counts do not add up to images")
        return manifest


def split_digest(classes: tuple[str, ...], shards: tuple[ShardEntry, ...]) -> str:
    """SHA-256 over the class names and the shards' SHA-256 in reading order."""
    sha = hashlib.sha256("\n".join(classes).encode())
    for shard in shards:
        sha.update(shard.sha256.encode())
    return sha.hexdigest()


def data_set_digest(splits: dict[str, SplitEntry]) -> str:
    """SHA-256 over the splits' digests."""
    return hashlib.sha256(
        "".join(f"{name}:{splits[name].digest}\n" for name in sorted(splits)).encode()
    ).hexdigest()


def read_manifest(root: StoragePath) -> Manifest:
    """The manifest at `root` (one read: no listing); DataError when absent or malformed."""
    path = root / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DataError(
            f"{path}: no such file: is {root} a folder written by `resnetctl data pack`?"
        ) from None
    except (StorageError, OSError) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    return Manifest.from_json(text, str(path))


@dataclass(frozen=True)
class ShardLayout:
    """A packed data set, prepared: its root and manifest. Read by `data/shards/reading.py`."""

    root: StoragePath
    manifest: Manifest
    #: The split reader that reads it (`data/splits.py`).
    reader: ClassVar[str] = "webdataset"

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names; labels are indices into them."""
        return self.manifest.classes

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.manifest.classes)

    @property
    def train_files(self) -> int:
        """Training images."""
        return self.manifest.splits["train"].images

    @property
    def val_files(self) -> int:
        """Validation images."""
        return self.manifest.splits["val"].images

    @property
    def skipped(self) -> tuple[str, ...]:
        """Files of the source that were left out when packing."""
        return tuple(item["path"] for item in self.manifest.skipped)

    def split_files(self, split: Split) -> int:
        """Images of `split`."""
        return self.manifest.splits[split].images

    def split_dir(self, split: Split) -> StoragePath:
        """Where the shards of `split` are (for messages)."""
        return self.root / split

    def shards(self, split: Split) -> tuple[ShardEntry, ...]:
        """The shards of `split`, in the manifest's order."""
        return self.manifest.splits[split].shards

    def first_image_size(self) -> tuple[int, int] | None:
        """(height, width) of the smallest image (CIFAR-style sets hold one size)."""
        smallest = self.manifest.image_size.get("min")
        return (int(smallest[0]), int(smallest[1])) if smallest else None

    def describe(self, split: Split) -> dict[str, Any]:
        """What MLflow's dataset entry of `split` shows: source, digest, counts."""
        entry = self.manifest.splits[split]
        return {
            "source": str(self.root),
            "digest": entry.digest,
            "images": entry.images,
            "classes": self.num_classes,
            "shards": len(entry.shards),
        }


def prepare_shards(source: Any) -> ShardLayout:
    """`data.source.kind: shards`: read the manifest under `source.root` (nothing else)."""
    try:
        root = StoragePath.of(str(source.root))
    except StorageError as exc:
        raise DataError(str(exc)) from None
    return ShardLayout(root, read_manifest(root))
