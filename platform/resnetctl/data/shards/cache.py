"""The node's copy of the shards it reads from a bucket: whole files, downloaded once.

DALI can read a shard in a bucket itself, but it fetches every image with a ranged request of
its own: as many requests as reading the image files one by one, each paying the store's
latency. A shard copied whole is a few large requests, and DALI then reads a local file.

The copies live under `<cache>/shards/<digest>/` (the cache folder of `data/imagefolder.py`,
`$RESNETCTL_CACHE` on a cluster node), keyed by the data set's digest and the shard's path,
and stay for later epochs and runs. Ranks of one node share them: a file lock per shard lets
one rank download while the others wait, and a download lands under a temporary name and is
renamed once its SHA-256 matches the manifest, so a shard in the cache is always whole.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from resnetctl.data.imagefolder import DataError
from resnetctl.footprint import cache_root
from resnetctl.storage import StorageError, StoragePath
from resnetctl.storage.location import DOWNLOAD_CHUNK

#: Shards copied at once by one rank: a single stream rarely fills a node's bandwidth.
PARALLEL = 4


def cache_folder(digest: str, cache: Path | None = None) -> Path:
    """Where the copies of the data set with this digest live on this node."""
    return (cache or cache_root()) / "shards" / digest[:20]


def local_copy(
    root: StoragePath,
    relative: str,
    folder: Path,
    *,
    sha256: str | None = None,
) -> Path:
    """`root/relative` as a file in `folder`: the cached copy, else downloaded now (checked
    against `sha256` when given). Safe to call from several processes at once."""
    target = folder / relative
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not target.is_file():  # another rank may have fetched it while we waited
            _download(root / relative, target, sha256)
    return target


def local_copies(
    root: StoragePath, items: Iterable[tuple[str, str | None]], folder: Path
) -> list[Path]:
    """`local_copy` of each `(relative path, sha256)`, several at a time, in the given order."""
    items = list(items)
    with ThreadPoolExecutor(max_workers=PARALLEL) as pool:
        return list(pool.map(lambda item: local_copy(root, item[0], folder, sha256=item[1]), items))


def _download(source: StoragePath, target: Path, sha256: str | None) -> None:
    fd, scratch = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, source.fs.open_input_stream(source.path) as stream:
            while block := stream.read(DOWNLOAD_CHUNK):
                digest.update(block)
                out.write(block)
        if sha256 is not None and digest.hexdigest() != sha256:
            raise DataError(
                f"{source}: SHA-256 {digest.hexdigest()[:12]}... differs from the manifest's "
                f"{sha256[:12]}...: the shard changed after packing; pack the data set again"
            )
        os.replace(scratch, target)
    except FileNotFoundError:
        raise DataError(f"{source}: missing (named in the data set's manifest)") from None
    except (StorageError, OSError) as exc:
        raise DataError(f"{source}: cannot download: {exc}") from None
    finally:
        Path(scratch).unlink(missing_ok=True)
