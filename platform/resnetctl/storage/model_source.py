"""Where a model source is in run storage: torch-free, for the job spec's `model.init.source`,
fine-tuning and the commands that read a trained model (eval, export, predict).

A source is a checkpoint directory, a run directory, or a run name under the storage root,
on this machine or in an object store (a bucket URI, or a run name under a bucket root): there
the checkpoint is chosen by listing the bucket and reading its small manifest and meta files,
and only the chosen one is downloaded when it is loaded. Fine-tuning (`model.init.source`)
needs the run's folder on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnetctl.storage.checkpoints import META as CHECKPOINT_META
from resnetctl.storage.checkpoints import completeness, is_complete
from resnetctl.storage.location import StoragePath, is_uri, storage_root
from resnetctl.storage.runs import RECORD, RunRecord, best_checkpoint, latest_checkpoint

if TYPE_CHECKING:
    from resnetctl.spec import JobSpec


class ModelSourceError(ValueError):
    """MODEL names nothing loadable; the message says what was looked for."""


def storage_root_here() -> Path:
    """The run storage root as a local folder; an object store is refused with advice."""
    root = storage_root()
    if not root.is_local:
        raise ModelSourceError(
            f"the run storage {root} is an object store: pass a checkpoint folder copied from "
            "it, or a models:/ URI"
        )
    return Path(root)


def absolute_source(source: str) -> str:
    """`source` as an absolute path when it is an existing path here or a run name under the
    storage root, else unchanged: the spec validated on the driver then names the same files
    in Ray workers, whose working directory and environment differ."""
    path = Path(source).expanduser()
    if path.exists():
        return str(path.resolve())
    run = storage_root_here() / source
    return str(run.resolve()) if source and run.is_dir() else source


def run_record(folder: Path) -> Any:
    """The `RunRecord` of the run directory holding `folder` (itself or a parent), or None."""
    for parent in (folder, *folder.parents):
        if (parent / RECORD).is_file():
            return RunRecord.load(parent.parent, parent.name)
    return None


def pick_checkpoint(folder: Path | StoragePath, spec: JobSpec | None) -> Path | StoragePath | None:
    """The best checkpoint of run folder `folder` (local or in a bucket) by `spec`'s ranking
    metric (the default metric without a spec), else its latest; None when it has none.
    Incomplete checkpoints are skipped with a warning naming them."""
    metric = spec.checkpoint.metric if spec is not None else "val_top1_error"
    mode = (spec.checkpoint.mode if spec is not None else None) or "min"
    found = best_checkpoint(folder, metric, mode) or latest_checkpoint(folder)
    if found is None:
        return None
    return Path(found) if found.is_local else found


def locate_checkpoint(
    target: str, storage: Path | StoragePath | None = None, spec: JobSpec | None = None
) -> tuple[Path | StoragePath, Any]:
    """The checkpoint directory `target` names (a checkpoint directory; a run directory or run
    name under the storage root: its best checkpoint by `spec`'s ranking metric, else its
    latest) and the run's record (None for a checkpoint outside any run). A run in an object
    store (`target` a URI, or the storage root one) gives a `StoragePath` there.

    Raises ModelSourceError naming what is missing."""
    root = StoragePath.of(storage) if storage is not None else storage_root()
    if is_uri(target) or (not root.is_local and not Path(target).expanduser().exists()):
        return _locate_in_store(target, root, spec)
    # Here `target` is a local path, or a run name under a local root.
    storage = Path(root.path) if root.is_local else Path.cwd()
    path = Path(target).expanduser()
    if is_complete(path):
        return path.resolve(), run_record(path.resolve())
    if (path / CHECKPOINT_META).is_file():
        raise ModelSourceError(f"{target}: incomplete checkpoint: {completeness(path).reason}")
    folder = path if path.is_dir() else storage / target
    if not folder.is_dir():
        known = sorted(p.name for p in storage.iterdir() if p.is_dir()) if storage.is_dir() else []
        hint = f"; known runs: {', '.join(known[-5:])}" if known else ""
        raise ModelSourceError(
            f"{target!r} is not a checkpoint directory, a run directory, a run name under "
            f"{storage}, or a models:/ URI{hint}"
        )
    folder = folder.resolve()
    checkpoint = pick_checkpoint(folder, spec)
    if checkpoint is None:
        raise ModelSourceError(f"run {target!r} ({folder}) has no checkpoint")
    return checkpoint, run_record(folder)


def _locate_in_store(
    target: str, root: StoragePath, spec: JobSpec | None
) -> tuple[StoragePath, Any]:
    """`locate_checkpoint` for a checkpoint or run in an object store."""
    path = StoragePath.of(target) if is_uri(target) else root / target
    if is_complete(path):
        return path, _store_record(path)
    if (path / CHECKPOINT_META).is_file():
        raise ModelSourceError(f"{path}: incomplete checkpoint: {completeness(path).reason}")
    if not path.is_dir():
        raise ModelSourceError(
            f"{target!r} is not a checkpoint or run folder in {path.parent}, nor a models:/ URI"
        )
    checkpoint = pick_checkpoint(path, spec)
    if checkpoint is None:
        raise ModelSourceError(f"run {target!r} ({path}) has no complete checkpoint")
    assert isinstance(checkpoint, StoragePath)
    return checkpoint, RunRecord.load(path.parent, path.name)


def _store_record(checkpoint: StoragePath) -> Any:
    """The record of the run folder holding checkpoint `checkpoint` in a store, or None."""
    run = checkpoint.parent
    return RunRecord.load(run.parent, run.name) if (run / RECORD).is_file() else None
