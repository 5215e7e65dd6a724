"""Image folders in an object store (`s3://bucket/imagenet`): the same layout, classes and labels
as a local folder, found by listing the bucket instead of walking a disk.

DALI reads the objects itself (`fn.readers.file(file_root="s3://...")`), so nothing is copied:
only the listing happens here. One recursive listing per split; its result is kept in the cache
folder under the URI, so the workers of a node and a resumed run do not list again (delete
`<cache>/scans/` or run `resnetctl data inspect URI`, which lists afresh, after changing the
bucket). Images are not opened at scan time (a GET per object would cost more than the epoch):
an empty object is left out, a corrupt one fails when DALI decodes it.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from pathlib import Path

from resnetctl.storage import StorageError, StoragePath

_LISTING_FORMAT = 1


def _walk_key(relative: str) -> tuple:
    # The order os.walk with sorted names gives a local folder: a folder's files, then its
    # sub-folders, each by name; so labels and the file list match the same folder on disk.
    parts = relative.split("/")
    return (*((1, part) for part in parts[:-1]), (0, parts[-1]))


def _cache_file(directory: StoragePath, cache: Path) -> Path:
    digest = hashlib.sha256(str(directory).encode()).hexdigest()[:20]
    return cache / "scans" / f"{digest}.bucket.json"


def list_objects(
    directory: StoragePath, cache: Path | None, refresh: bool
) -> list[tuple[str, int]]:
    """`(path relative to directory, size)` of every object below `directory`, from the cache
    unless `refresh` or absent."""
    from resnetctl.data.imagefolder import DataError, _atomic_write_text

    cache_file = _cache_file(directory, cache) if cache is not None else None
    if cache_file is not None and not refresh:
        try:
            payload = json.loads(cache_file.read_text(encoding="utf-8"))
            if payload.get("format") == _LISTING_FORMAT and payload["uri"] == str(directory):
                return [(rel, size) for rel, size in payload["objects"]]
        except (OSError, ValueError, KeyError):
            pass
    from pyarrow import fs as pafs

    try:
        if not directory.is_dir():
            raise DataError(f"{directory}: folder does not exist")
        infos = directory.fs.get_file_info(pafs.FileSelector(directory.path, recursive=True))
    except (StorageError, OSError) as exc:
        raise DataError(f"{directory}: cannot list the bucket: {exc}") from None
    objects = sorted(
        (
            (posixpath.relpath(info.path, directory.path), int(info.size or 0))
            for info in infos
            if info.type == pafs.FileType.File
        ),
        key=lambda item: _walk_key(item[0]),
    )
    if cache_file is not None:
        payload = {"format": _LISTING_FORMAT, "uri": str(directory), "objects": objects}
        _atomic_write_text(cache_file, json.dumps(payload))
    return objects


def scan_bucket_split(
    directory: StoragePath,
    *,
    cache: Path | None,
    refresh: bool = False,
    objects: list[tuple[str, int]] | None = None,
):
    """`scan_split` for a split folder in an object store (same rules for classes, hidden
    names, extensions and file names; no decoding). `objects`: its `list_objects` result,
    when the caller already listed it."""
    from resnetctl.data.imagefolder import (
        IMAGE_EXTENSIONS,
        DataError,
        SplitScan,
        _valid_list_name,
    )

    if objects is None:
        objects = list_objects(directory, cache, refresh)
    classes = sorted(
        {rel.split("/", 1)[0] for rel, _ in objects if "/" in rel and not rel.startswith(".")}
    )
    if not classes:
        raise DataError(f"{directory}: no class folders (expected {directory}/<class>/<image>)")
    files: list[tuple[str, str]] = []
    rejected: list[tuple[str, str]] = []
    for rel, size in objects:
        parts = rel.split("/")
        if any(part.startswith(".") for part in parts):
            continue
        if len(parts) == 1:
            rejected.append((rel, "not inside a class folder"))
        elif Path(rel).suffix.lower() not in IMAGE_EXTENSIONS:
            rejected.append((rel, "not an image file (extension)"))
        elif not _valid_list_name(rel):
            rejected.append((rel, "file name has leading/trailing whitespace"))
        elif size == 0:
            rejected.append((rel, "empty file"))
        else:
            files.append((rel, parts[0]))
    return SplitScan(directory, tuple(classes), tuple(files), tuple(sorted(rejected)))  # type: ignore[arg-type]


def _prelist_folder(source: object) -> None:
    from resnetctl.footprint import cache_root

    base = StoragePath.of(source.root)  # type: ignore[attr-defined]
    for sub in (getattr(source, "train_dir", "train"), getattr(source, "val_dir", "val")):
        scan_bucket_split(base / sub, cache=cache_root())


def _read_manifest(source: object) -> None:
    from resnetctl.data.shards.manifest import read_manifest

    read_manifest(StoragePath.of(source.root))  # type: ignore[attr-defined]


#: Source kind -> what the driver does with its bucket before the workers start.
_BEFORE_WORKERS = {
    "imagefolder": _prelist_folder,
    # Packed shards are never listed: their manifest, read here, is all a run needs.
    "shards": _read_manifest,
}


def prelist(source: object) -> None:
    """List a bucket data source's splits into this node's cache, once, before the workers
    start: the workers of an embedded run (and a resumed run) then read the listing instead of
    each listing the bucket at the same moment (packed shards: read their manifest). A no-op
    for local folders. Raises DataError when the bucket cannot be read, before any worker
    exists."""
    root = getattr(source, "root", None)
    if not isinstance(root, str) or "://" not in root:
        return
    step = _BEFORE_WORKERS.get(getattr(source, "kind", "imagefolder"))
    if step is not None:
        step(source)
