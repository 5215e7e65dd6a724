"""Image folders in ImageNet's layout: scanning, validation, DALI file lists, the shared cache.

Every source ends up here: `digits` and `synthetic` write an image folder into the cache and hand
it to `layout_for_folder` like a user's own `imagefolder`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from resnetctl.data.imagecheck import check_image
from resnetctl.footprint import cache_root

if TYPE_CHECKING:
    from resnetctl.storage import StoragePath

Split = Literal["train", "val"]

#: Extensions accepted as images (the formats DALI's CPU decoder reads), compared lower-case.
IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".pnm",
        ".ppm",
        ".pgm",
        ".pbm",
        ".jp2",
    }
)
#: Splits of at most this many files are fully decoded with PIL at scan time; larger ones only
#: get the cheap header/trailer checks (a full decode of ImageNet would take hours).
FULL_DECODE_LIMIT = 2000
_SCAN_FORMAT = 1
# Folder mtimes have coarse (clock-tick) resolution: a file added in the same tick as the scan
# leaves the mtime unchanged. Scans of folders changed this recently are therefore not cached.
_RACY_SECONDS = 2.0


class DataError(ValueError):
    """A data set on disk is unusable; the message names the file or folder at fault."""


@dataclass(frozen=True)
class DatasetLayout:
    """A prepared data set: class folders under `train_dir` and `val_dir` and a DALI file list
    (lines `relative/path label`, relative to the split folder) for each split. The folders are
    local paths, or `StoragePath`s in an object store (DALI reads `str()` of them, a URI)."""

    root: Path | StoragePath
    train_dir: Path | StoragePath
    val_dir: Path | StoragePath
    classes: tuple[str, ...]
    train_files: int
    val_files: int
    train_list: Path
    val_list: Path
    skipped: tuple[Path, ...] = ()
    #: The split reader that reads it (`data/splits.py`).
    reader: ClassVar[str] = "file"

    @property
    def num_classes(self) -> int:
        """Number of classes (labels are indices into `classes`)."""
        return len(self.classes)

    def split_dir(self, split: Split) -> Path | StoragePath:
        """Folder holding the class folders of `split`."""
        return {"train": self.train_dir, "val": self.val_dir}[split]

    def split_list(self, split: Split) -> Path:
        """DALI file list of `split`."""
        return {"train": self.train_list, "val": self.val_list}[split]

    def split_files(self, split: Split) -> int:
        """Number of usable images in `split`."""
        return {"train": self.train_files, "val": self.val_files}[split]


@dataclass(frozen=True)
class SplitScan:
    """What a scan of one split folder found."""

    directory: Path | StoragePath
    classes: tuple[str, ...]
    #: (path relative to `directory`, class name) of every usable image, sorted.
    files: tuple[tuple[str, str], ...]
    #: (path relative to `directory`, reason) of every file left out.
    rejected: tuple[tuple[str, str], ...]

    def count_per_class(self) -> dict[str, int]:
        """Usable images per class, in class order."""
        counts = dict.fromkeys(self.classes, 0)
        for _, cls in self.files:
            counts[cls] += 1
        return counts


def publish_tree(final: Path, write: Callable[[Path], None]) -> Path:
    """Create the folder `final` by letting `write` fill a temporary sibling, then renaming it.

    Several Ray workers may prepare the same data set at once: the rename is atomic, so a reader
    sees either no folder or a complete one, and the loser of the race discards its copy.
    """
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the data set from other users
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _valid_list_name(rel: str) -> bool:
    # DALI's file_list splits each line at its last whitespace and cannot represent names with
    # leading/trailing whitespace or line breaks.
    return rel == rel.strip() and "\n" not in rel and "\r" not in rel


def _fingerprint(directory: Path) -> list[tuple[str, int]]:
    """mtimes of `directory` and every folder below it: adding, removing or renaming a file
    changes its folder's mtime (editing a file in place does not: delete the cache then)."""
    entries = []
    for dirpath, dirnames, _ in os.walk(directory):
        dirnames.sort()
        rel = os.path.relpath(dirpath, directory)
        entries.append((rel, os.stat(dirpath).st_mtime_ns))
    return entries


def _is_uri(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def _scan_cache_path(directory: Path | StoragePath, cache: Path) -> Path:
    where = str(directory if not isinstance(directory, Path) else directory.resolve())
    digest = hashlib.sha256(where.encode()).hexdigest()[:20]
    return cache / "scans" / f"{digest}.json"


def scan_split(
    directory: Path,
    *,
    cache: Path | None = None,
    full_decode: bool | None = None,
) -> SplitScan:
    """Scan one split folder (`<directory>/<class>/**/<image>`), checking every file.

    `full_decode=None` decodes every image with PIL when the split has at most
    `FULL_DECODE_LIMIT` files. With a `cache` folder, the result is stored there keyed by the
    folders' mtimes, so an unchanged folder is not re-read.
    Raises DataError if `directory` is missing or holds no class folders.
    """
    if not directory.is_dir():
        raise DataError(f"{directory}: folder does not exist")
    cache_file = _scan_cache_path(directory, cache) if cache is not None else None
    fingerprint = _fingerprint(directory)
    if cache_file is not None:
        cached = _load_scan(cache_file, directory, fingerprint, full_decode)
        if cached is not None:
            return cached

    classes = tuple(
        sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    )
    rejected: list[tuple[str, str]] = []
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        if entry.is_file() and not entry.name.startswith("."):
            rejected.append((entry.name, "not inside a class folder"))
    if not classes:
        raise DataError(f"{directory}: no class folders (expected {directory}/<class>/<image>)")

    candidates: list[tuple[str, str]] = []
    for cls in classes:
        for dirpath, dirnames, filenames in os.walk(directory / cls):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), directory)
                if Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                    rejected.append((rel, "not an image file (extension)"))
                elif not _valid_list_name(rel):
                    rejected.append((rel, "file name has leading/trailing whitespace"))
                else:
                    candidates.append((rel, cls))

    deep = len(candidates) <= FULL_DECODE_LIMIT if full_decode is None else full_decode
    files: list[tuple[str, str]] = []
    for rel, cls in candidates:
        problem = check_image(directory / rel, full_decode=deep)
        if problem is None:
            files.append((rel, cls))
        else:
            rejected.append((rel, problem))
    scan = SplitScan(directory, classes, tuple(files), tuple(sorted(rejected)))
    settled = max(m for _, m in fingerprint) < (time.time() - _RACY_SECONDS) * 1e9
    if cache_file is not None and settled:
        payload = {
            "format": _SCAN_FORMAT,
            "directory": str(directory.resolve()),
            "fingerprint": fingerprint,
            "full_decode": deep,
            "classes": list(scan.classes),
            "files": [list(f) for f in scan.files],
            "rejected": [list(r) for r in scan.rejected],
        }
        _atomic_write_text(cache_file, json.dumps(payload))
    return scan


def _load_scan(
    cache_file: Path, directory: Path, fingerprint: list[tuple[str, int]], full_decode: bool | None
) -> SplitScan | None:
    try:
        payload = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        payload.get("format") != _SCAN_FORMAT
        or payload.get("directory") != str(directory.resolve())
        or [tuple(e) for e in payload.get("fingerprint", [])] != fingerprint
        or (full_decode is not None and payload.get("full_decode") != full_decode)
    ):
        return None
    return SplitScan(
        directory,
        tuple(payload["classes"]),
        tuple((rel, cls) for rel, cls in payload["files"]),
        tuple((rel, why) for rel, why in payload["rejected"]),
    )


def _names(items: Iterable[str], limit: int = 10) -> str:
    items = sorted(items)
    shown = ", ".join(items[:limit])
    return shown + (f" ... ({len(items)} in all)" if len(items) > limit else "")


def check_class_sets(train: SplitScan, val: SplitScan) -> None:
    """Raise DataError unless both splits have the same class folders."""
    missing = set(train.classes) - set(val.classes)
    extra = set(val.classes) - set(train.classes)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing from {val.directory}: {_names(missing)}")
        if extra:
            parts.append(f"only in {val.directory}, not in {train.directory}: {_names(extra)}")
        raise DataError("train and val class folders differ; " + "; ".join(parts))


def _warn_rejected(scan: SplitScan) -> None:
    for rel, why in scan.rejected:
        warnings.warn(f"{scan.directory / rel}: skipped, {why}", stacklevel=3)


def _require_images(scan: SplitScan) -> None:
    empty = [cls for cls, n in scan.count_per_class().items() if n == 0]
    if empty:
        where = ", ".join(str(scan.directory / c) for c in empty[:10])
        raise DataError(f"class folder(s) without a usable image: {where}")


def write_file_list(scan: SplitScan, classes: tuple[str, ...], path: Path) -> Path:
    """Write the DALI file list of `scan` (label = index of the class in `classes`)."""
    label = {c: i for i, c in enumerate(classes)}
    _atomic_write_text(path, "".join(f"{rel} {label[cls]}\n" for rel, cls in scan.files))
    return path


def layout_for_folder(
    root: Path | str,
    train_dir: str = "train",
    val_dir: str = "val",
    *,
    cache: Path | None = None,
    full_decode: bool | None = None,
) -> DatasetLayout:
    """Scan `root/train_dir` and `root/val_dir`, check them and write their DALI file lists.

    Unusable files are skipped with a warning naming each; a missing or empty split, a class
    folder with no usable image, or differing class sets raise DataError. `root` may be an
    object-store URI (`s3://bucket/prefix`): its splits are listed, not walked.
    """
    cache = cache_root() if cache is None else cache
    scans = {}
    if isinstance(root, str) and _is_uri(root):
        # import-circle: a bucket's split is scanned with this module's rules and types
        from resnetctl.data.objectstore import scan_bucket_split
        from resnetctl.storage import StoragePath

        root = StoragePath.of(root)
        for split, sub in (("train", train_dir), ("val", val_dir)):
            scans[split] = scan_bucket_split(root / sub, cache=cache)
    else:
        root = Path(root).expanduser().absolute()
        if not root.is_dir():
            raise DataError(f"{root}: data folder does not exist")
        for split, sub in (("train", train_dir), ("val", val_dir)):
            scans[split] = scan_split(root / sub, cache=cache, full_decode=full_decode)
    check_class_sets(scans["train"], scans["val"])
    for scan in scans.values():
        _warn_rejected(scan)
        _require_images(scan)
    classes = scans["train"].classes
    lists = {}
    for split, scan in scans.items():
        key = _scan_cache_path(scan.directory, cache).with_suffix("")
        lists[split] = write_file_list(scan, classes, key.parent / f"{key.name}.{split}.txt")
    skipped = tuple(s.directory / rel for s in scans.values() for rel, _ in s.rejected)
    return DatasetLayout(
        root=root,
        train_dir=scans["train"].directory,
        val_dir=scans["val"].directory,
        classes=classes,
        train_files=len(scans["train"].files),
        val_files=len(scans["val"].files),
        train_list=lists["train"],
        val_list=lists["val"],
        skipped=skipped,
    )
