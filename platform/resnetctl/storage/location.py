"""A storage location: a local path or an object-store URI, behind one small path-like type.

Every run record, checkpoint and sweep record is read and written through `StoragePath`, over
`pyarrow.fs` (what Ray Train itself uses for `storage_path`): a local path goes through
`LocalFileSystem`, `s3://bucket/prefix` (or `gs://`, anything `FileSystem.from_uri` resolves)
through that store's filesystem. S3 takes its endpoint from `AWS_ENDPOINT_URL` (an S3-compatible
store) and its keys from the standard AWS variables, as boto3 and DALI do.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Where runs live when neither `--storage` nor `$RESNETCTL_STORAGE` says.
DEFAULT_STORAGE = ".resnetctl/runs"
#: Where jobs submitted to a cluster keep their runs when neither says: a path on the head
#: node, fine for one node only (multi-node clusters need a bucket or a shared mount).
CLUSTER_DEFAULT_STORAGE = "~/resnetctl/runs"
#: Bytes per request when a checkpoint is downloaded from an object store.
DOWNLOAD_CHUNK = 64 << 20


class StorageError(RuntimeError):
    """A storage location that cannot be parsed or reached."""


def is_uri(location: str | os.PathLike[str]) -> bool:
    """Whether `location` names an object store (`s3://...`), not a local path."""
    text = os.fspath(location)
    return "://" in text and not text.startswith("file://")


@lru_cache(maxsize=16)
def _filesystem(scheme: str, bucket: str, query: str) -> Any:
    # One filesystem per bucket: building an S3 client (and finding the bucket's region when
    # AWS_REGION is unset) costs a request or two, not something to repeat per checkpoint.
    from pyarrow import fs as pafs

    uri = f"{scheme}://{bucket}" + (f"?{query}" if query else "")
    try:
        return pafs.FileSystem.from_uri(uri)[0]
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...
        raise StorageError(f"{uri}: not a storage location pyarrow can open: {exc}") from None


class StoragePath:
    """A file or folder in a storage location (local or object store), with the few `Path`
    operations that run storage needs. `str()` is the local path or the URI."""

    def __init__(self, filesystem: Any, path: str, scheme: str = "", query: str = "") -> None:
        self.fs = filesystem
        self.path = path.rstrip("/") or "/"
        self.scheme = scheme  # "" for a local path
        self.query = query  # e.g. `endpoint_override=...`: kept so str() parses back the same

    def _at(self, path: str) -> StoragePath:
        return StoragePath(self.fs, path, self.scheme, self.query)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def of(cls, location: StoragePath | str | os.PathLike[str]) -> StoragePath:
        """`location` as a StoragePath: URIs through `pyarrow.fs`, local paths made absolute."""
        if isinstance(location, StoragePath):
            return location
        text = os.fspath(location)
        if is_uri(text):
            base, _, query = text.partition("?")
            scheme, _, path = base.partition("://")
            path = path.strip("/")
            if not path:
                raise StorageError(f"{text}: no bucket in the storage URI")
            return cls(_filesystem(scheme, path.split("/", 1)[0], query), path, scheme, query)
        if text.startswith("file://"):
            text = text[len("file://") :]
        from pyarrow import fs as pafs

        local = Path(text).expanduser().resolve()
        return cls(pafs.LocalFileSystem(), local.as_posix())

    # -- path arithmetic ----------------------------------------------------------------------
    @property
    def is_local(self) -> bool:
        """Whether this is a path on this machine's file system."""
        return not self.scheme

    @property
    def name(self) -> str:
        """The last component."""
        return posixpath.basename(self.path)

    @property
    def parent(self) -> StoragePath:
        """The folder holding this one."""
        return self._at(posixpath.dirname(self.path) or "/")

    def __truediv__(self, other: str | os.PathLike[str]) -> StoragePath:
        return self._at(posixpath.join(self.path, os.fspath(other).strip("/")))

    def __str__(self) -> str:
        if not self.scheme:
            return self.path
        return f"{self.scheme}://{self.path}" + (f"?{self.query}" if self.query else "")

    def __repr__(self) -> str:
        return f"StoragePath({str(self)!r})"

    def __fspath__(self) -> str:
        if not self.is_local:
            # Silently treating a bucket key as a local path would write beside the bucket.
            raise TypeError(f"{self} is in an object store, not a local path: use .local()")
        return self.path

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StoragePath):
            return str(self) == str(other)
        if isinstance(other, (str, os.PathLike)) and self.is_local:
            return self.path == Path(other).expanduser().resolve().as_posix()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(str(self))

    def relative_parts(self, ancestor: StoragePath) -> tuple[str, ...]:
        """The components of this path below `ancestor` (ValueError when it is not below)."""
        relative = posixpath.relpath(self.path, ancestor.path)
        if relative.startswith(".."):
            raise ValueError(f"{self} is not under {ancestor}")
        return tuple(p for p in relative.split("/") if p not in ("", "."))

    # -- queries ------------------------------------------------------------------------------
    def _info(self) -> Any:
        try:
            return self.fs.get_file_info(self.path)
        except OSError as exc:
            raise StorageError(f"{self}: {exc}") from None

    def exists(self) -> bool:
        """Whether a file or folder is there."""
        from pyarrow import fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        """Whether a folder is there (in a bucket: any object under this prefix)."""
        from pyarrow import fs as pafs

        return self._info().type == pafs.FileType.Directory

    def is_file(self) -> bool:
        """Whether a file (an object) is there."""
        from pyarrow import fs as pafs

        return self._info().type == pafs.FileType.File

    def _list(self, recursive: bool) -> list[Any]:
        from pyarrow import fs as pafs

        if not self.is_dir():
            return []
        selector = pafs.FileSelector(self.path, recursive=recursive, allow_not_found=True)
        try:
            return self.fs.get_file_info(selector)
        except OSError as exc:
            raise StorageError(f"{self}: {exc}") from None

    def iterdir(self) -> Iterator[StoragePath]:
        """The entries directly in this folder (none when it does not exist)."""
        for info in self._list(recursive=False):
            yield self._at(info.path)

    def file_sizes(self) -> dict[str, int]:
        """Name -> size in bytes of the files directly in this folder: one listing."""
        from pyarrow import fs as pafs

        return {
            info.base_name: int(info.size)
            for info in self._list(recursive=False)
            if info.type == pafs.FileType.File
        }

    def rglob(self, name: str) -> Iterator[StoragePath]:
        """Files named `name` anywhere below this folder: one listing, even in a bucket."""
        from pyarrow import fs as pafs

        for info in self._list(recursive=True):
            if info.type == pafs.FileType.File and info.base_name == name:
                yield self._at(info.path)

    def glob(self, pattern: str) -> list[StoragePath]:
        """Entries matching a relative `fnmatch` pattern such as `*/train/x` (sorted)."""
        depth = pattern.count("/") + 1
        found = []
        for info in self._list(recursive=depth > 1):
            relative = posixpath.relpath(info.path, self.path)
            if relative.count("/") + 1 == depth and fnmatch.fnmatchcase(relative, pattern):
                found.append(self._at(info.path))
        return sorted(found, key=str)

    # -- contents -----------------------------------------------------------------------------
    def read_bytes(self) -> bytes:
        """The file's bytes."""
        try:
            with self.fs.open_input_stream(self.path) as stream:
                return stream.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if not self.exists():
                raise FileNotFoundError(str(self)) from None
            raise StorageError(f"{self}: {exc}") from None

    def read_text(self, encoding: str = "utf-8") -> str:
        """The file's text."""
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> None:
        """Write the file (its folder is created; an object store has none to create)."""
        if self.is_local:
            self.fs.create_dir(posixpath.dirname(self.path), recursive=True)
        try:
            with self.fs.open_output_stream(self.path) as stream:
                stream.write(data)
        except OSError as exc:
            raise StorageError(f"{self}: cannot write: {exc}") from None

    def write_text(self, text: str, encoding: str = "utf-8") -> None:
        """Write the file's text."""
        self.write_bytes(text.encode(encoding))

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        """Create the folder (a no-op on object stores, which have only keys)."""
        del parents, exist_ok
        self.fs.create_dir(self.path, recursive=True)

    @contextmanager
    def local(self) -> Iterator[Path]:
        """This file or folder as a local path: itself when local, else a temporary copy
        downloaded from the store (removed on exit)."""
        if self.is_local:
            yield Path(self.path)
            return
        from pyarrow import fs as pafs

        scratch = Path(tempfile.mkdtemp(prefix="resnetctl-storage-"))
        try:
            target = scratch / (self.name or "root")
            if self.is_dir():
                target.mkdir()
                pafs.copy_files(
                    self.path,
                    str(target),
                    source_filesystem=self.fs,
                    destination_filesystem=pafs.LocalFileSystem(),
                    # One ranged GET per chunk: pyarrow's 1 MiB default makes a 200 MB
                    # checkpoint 200 requests (81 s instead of 2 s from the loopback server).
                    chunk_size=DOWNLOAD_CHUNK,
                )
            else:
                target.write_bytes(self.read_bytes())
            yield target
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def ray_storage(self) -> dict[str, Any]:
        """`RunConfig` keyword arguments that store under this folder: a local path as it is,
        an object store as its path plus the filesystem (so an endpoint in the URI or the
        environment reaches every node's upload)."""
        if self.is_local:
            return {"storage_path": self.path}
        return {"storage_path": self.path, "storage_filesystem": self.fs}


#: URI schemes of the stores `pyarrow.fs` opens (and so Ray Train's `storage_path`).
SCHEMES = ("s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def check_scheme(location: str | os.PathLike[str]) -> None:
    """Raise `StorageError` when `location` is a URI of a kind no storage filesystem opens;
    contacts nothing (a cluster's bucket may answer the cluster alone)."""
    text = os.fspath(location)
    if not is_uri(text):
        return
    scheme = text.split("://", 1)[0]
    if scheme not in SCHEMES:
        raise StorageError(
            f"{text}: not a storage location pyarrow can open: a path, or a URI of "
            + ", ".join(f"{s}://" for s in SCHEMES)
        )


def storage_root(override: str | os.PathLike[str] | None = None) -> StoragePath:
    """The storage root: `override` (`--storage`), else `$RESNETCTL_STORAGE`, else
    `.resnetctl/runs` in the working directory. A local path is made absolute."""
    location = override or os.environ.get("RESNETCTL_STORAGE") or DEFAULT_STORAGE
    return StoragePath.of(location)
