"""The checkpoint folder format and its completeness rule, in one place for every reader and
writer (training writes checkpoints; run storage, `--resume`, eval, export, predict, `list` and
fine-tuning read them).

A checkpoint folder holds `state.pt` (tensors and plain containers, read with
`torch.load(weights_only=True)`), `meta.json` (epoch, step, metrics, spec, classes: what
listings and rankings read without tensors) and, written last, `manifest.json`: every other
file's size and SHA-256. A checkpoint exists only once its manifest does and every file it
names has the size it says: a worker that died while uploading leaves a folder without a
manifest (or with files missing or short), which every reader skips with a warning naming it.
The digests are checked when the state is loaded, so a file that has the right size but not
the right bytes is refused too.

Checkpoints written before manifests existed (`meta.json` format 1, no manifest) count as
complete when both `state.pt` and `meta.json` are there: the best that can be said of them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnetctl.storage.location import StorageError, StoragePath

log = logging.getLogger(__name__)

STATE = "state.pt"
META = "meta.json"
MANIFEST = "manifest.json"
#: meta.json's format: 2 has a manifest and may be written in the middle of an epoch.
FORMAT_VERSION = 2

Location = StoragePath | str | os.PathLike[str]
_CHUNK = 8 << 20


class IncompleteCheckpointError(FileNotFoundError):
    """A checkpoint folder whose manifest is missing or does not match its files."""


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a local file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Describe every file of a local checkpoint folder in `manifest.json` (written last, via
    a temporary name); returns the manifest."""
    folder = Path(directory)
    files = {
        path.name: {"size": path.stat().st_size, "sha256": file_digest(path)}
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name != MANIFEST and not path.name.endswith(".tmp")
    }
    manifest = {"format_version": FORMAT_VERSION, "files": files}
    tmp = folder / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    os.replace(tmp, folder / MANIFEST)
    return manifest


@dataclass(frozen=True)
class Completeness:
    """Whether a checkpoint folder is complete, and if not, why."""

    complete: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.complete


def completeness(path: Location, sizes: dict[str, int] | None = None) -> Completeness:
    """Check a checkpoint folder (local or in a bucket) against its manifest: one listing of
    the folder (none when `sizes`, its files' sizes, are given), one small read."""
    folder = StoragePath.of(path)
    if sizes is None:
        try:
            sizes = folder.file_sizes()
        except (OSError, ValueError, StorageError) as exc:
            return Completeness(False, f"cannot list it: {exc}")
    if MANIFEST not in sizes:
        if STATE in sizes and META in sizes and _legacy(folder / META):
            return Completeness(True)
        missing = [name for name in (STATE, META, MANIFEST) if name not in sizes]
        return Completeness(False, f"no {', '.join(missing)} (not written to the end)")
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError, StorageError) as exc:
        return Completeness(False, f"unreadable {MANIFEST}: {exc}")
    for name, entry in files.items():
        if name not in sizes:
            return Completeness(False, f"{name} is missing")
        if sizes[name] != entry.get("size"):
            return Completeness(False, f"{name} has {sizes[name]} bytes, not {entry.get('size')}")
    if STATE not in files:
        return Completeness(False, f"its manifest lists no {STATE}")
    return Completeness(True)


def scan(folder: Location) -> list[tuple[StoragePath, Completeness]]:
    """Every checkpoint folder below `folder` (any folder holding one of the checkpoint's
    files), with its completeness: one recursive listing, then each manifest."""
    from pyarrow import fs as pafs

    root = StoragePath.of(folder)
    by_folder: dict[str, dict[str, int]] = {}
    for info in root._list(recursive=True):
        if info.type == pafs.FileType.File and info.base_name in (STATE, META, MANIFEST):
            parent = info.path.rsplit("/", 1)[0]
            by_folder.setdefault(parent, {})[info.base_name] = int(info.size)
    found = []
    for path in sorted(by_folder):
        candidate = root._at(path)
        found.append((candidate, completeness(candidate, by_folder[path])))
    return found


def _legacy(meta: StoragePath) -> bool:
    try:
        return int(json.loads(meta.read_text()).get("format_version", 1)) < FORMAT_VERSION
    except (OSError, ValueError, TypeError):
        return False


def is_complete(path: Location) -> bool:
    """Whether `path` is a complete checkpoint folder (see `completeness`)."""
    return bool(completeness(path))


def warn_incomplete(path: Location, reason: str) -> None:
    """The one warning every reader gives for a checkpoint it skips."""
    log.warning("skipping the incomplete checkpoint %s: %s", path, reason)


def verify_digests(directory: str | os.PathLike[str]) -> None:
    """Check a local checkpoint folder's files against its manifest's digests (nothing to check
    without a manifest). Raises IncompleteCheckpointError naming the first file that differs."""
    folder = Path(directory)
    manifest_file = folder / MANIFEST
    if not manifest_file.is_file():
        return
    files = json.loads(manifest_file.read_text()).get("files", {})
    for name, entry in files.items():
        local = folder / name
        if not local.is_file():
            raise IncompleteCheckpointError(f"{folder}: {name} is missing")
        if file_digest(local) != entry.get("sha256"):
            raise IncompleteCheckpointError(f"{folder}: {name} does not match its manifest")


def load_state(
    directory: str | os.PathLike[str], map_location: Any = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(state, meta)` of a complete local checkpoint folder: digests checked, `state.pt` read
    with `torch.load(weights_only=True)` (a checkpoint from an untrusted place cannot run code).

    Keep `map_location="cpu"` when resuming: the RNG states must stay on the CPU, and module
    and optimiser `load_state_dict` move tensors to their parameters' device themselves."""
    import torch

    folder = Path(directory)
    verdict = completeness(folder)
    if not verdict:
        raise IncompleteCheckpointError(f"{folder} is not a complete checkpoint: {verdict.reason}")
    verify_digests(folder)
    state = torch.load(folder / STATE, map_location=map_location, weights_only=True)
    meta_file = folder / META
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    return state, meta


def progress_key(meta: dict[str, Any]) -> tuple[int, int]:
    """How far a checkpoint's run had trained, for "the latest": the optimiser step (older
    checkpoints without one order by their epoch)."""
    step = meta.get("step")
    return (int(step) if isinstance(step, int) else -1, int(meta.get("epoch", -1)))
