"""`resnetctl data inspect`: what a folder of images holds and what is wrong with it."""

from __future__ import annotations

import statistics
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
from resnetctl.footprint import cache_root


@dataclass
class SplitReport:
    """One split folder: usable images per class and the files left out."""

    name: str
    directory: str
    images: int
    per_class: dict[str, int]
    unreadable: list[dict[str, str]]


@dataclass
class InspectReport:
    """Classes, counts per split, image sizes of a sample, unreadable files, problems."""

    root: str
    classes: list[str]
    splits: list[SplitReport]
    #: {"sampled": n, "height": {"min", "median", "max"}, "width": {...}} (empty without images).
    image_size: dict[str, Any]
    #: Reasons the folder cannot be trained on as it is (missing split, class mismatch, ...).
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        """Whether prepare_dataset would accept the folder."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self) | {"usable": self.usable}


def _summary(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _image_sizes(scans: list[SplitScan], sample: int) -> dict[str, Any]:
    from PIL import Image

    from resnetctl.storage import StoragePath

    paths = [scan.directory / rel for scan in scans for rel, _ in scan.files]
    if not paths or sample <= 0:
        return {}
    picks = np.unique(np.linspace(0, len(paths) - 1, num=min(sample, len(paths))).astype(int))
    heights, widths = [], []
    for i in picks:
        path = paths[i]
        try:
            if isinstance(path, StoragePath):  # an object: PIL reads its header by range
                with path.fs.open_input_file(path.path) as stream, Image.open(stream) as im:
                    width, height = im.size
            else:
                with Image.open(path) as im:  # reads the header only
                    width, height = im.size
        except Exception:  # already vetted by the scan; a race with a deleter is not our problem
            continue
        heights.append(height)
        widths.append(width)
    if not heights:
        return {}
    return {"sampled": len(heights), "height": _summary(heights), "width": _summary(widths)}


def inspect_dataset(
    path: Path | str, *, sample: int = 200, train_dir: str = "train", val_dir: str = "val"
) -> InspectReport:
    """Inspect `path`: an ImageNet-style root with train/val splits, or one split folder of
    class folders; a local folder or an object-store URI (`s3://bucket/prefix`, listed afresh).
    Raises DataError only if `path` does not exist; every other defect is listed in the
    report's `problems`."""
    from resnetctl.storage import StorageError, StoragePath, is_uri

    bucket = isinstance(path, str) and is_uri(path)
    try:
        path = StoragePath.of(path) if bucket else Path(path).expanduser()
        missing = not path.exists()
    except StorageError as exc:
        raise DataError(str(exc)) from None
    if missing:
        raise DataError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    split_dirs = [(name, path / name) for name in (train_dir, val_dir) if (path / name).is_dir()]
    problems: list[str] = []
    if not split_dirs:
        split_dirs = [(path.name or str(path), path)]
        problems.append(f"{path}: no '{train_dir}' and '{val_dir}' sub-folders")
    elif len(split_dirs) == 1:
        missing = val_dir if split_dirs[0][0] == train_dir else train_dir
        problems.append(f"{path / missing}: folder does not exist")

    cache = cache_root()
    scans: dict[str, SplitScan] = {}
    for name, directory in split_dirs:
        try:
            if bucket:
                from resnetctl.data.objectstore import scan_bucket_split

                scans[name] = scan_bucket_split(directory, cache=cache, refresh=True)
            else:
                scans[name] = scan_split(directory, cache=cache)
        except DataError as exc:
            problems.append(str(exc))
    if train_dir in scans and val_dir in scans:
        try:
            check_class_sets(scans[train_dir], scans[val_dir])
        except DataError as exc:
            problems.append(str(exc))
    reports = []
    for name, scan in scans.items():
        counts = scan.count_per_class()
        problems.extend(
            f"{scan.directory / cls}: no usable image" for cls, n in counts.items() if n == 0
        )
        reports.append(
            SplitReport(
                name=name,
                directory=str(scan.directory),
                images=len(scan.files),
                per_class=counts,
                unreadable=[
                    {"path": str(scan.directory / rel), "reason": why} for rel, why in scan.rejected
                ],
            )
        )
    classes = sorted({c for scan in scans.values() for c in scan.classes})
    return InspectReport(
        root=str(path if bucket else path.absolute()),
        classes=classes,
        splits=reports,
        image_size=_image_sizes(list(scans.values()), sample),
        problems=problems,
    )
