"""Where a model source is in run storage: torch-free, for the job spec's `model.init.source`,
fine-tuning and the commands that read a trained model (eval, export, predict).

A source is a checkpoint directory, a run directory, or a run name under the storage root. A
run kept in an object store is read through a local copy of its folder's checkpoints; eval,
export and predict need the run's folder on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnetctl.storage.checkpoints import META as CHECKPOINT_META
from resnetctl.storage.checkpoints import completeness, is_complete
from resnetctl.storage.location import storage_root
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


def pick_checkpoint(folder: Path, spec: JobSpec | None) -> Path | None:
    """The best checkpoint of run folder `folder` by `spec`'s ranking metric (the default
    metric without a spec), else its latest; None when it has none."""
    metric = spec.checkpoint.metric if spec is not None else "val_top1_error"
    mode = (spec.checkpoint.mode if spec is not None else None) or "min"
    found = best_checkpoint(folder, metric, mode) or latest_checkpoint(folder)
    return Path(found) if found is not None else None


def locate_checkpoint(
    target: str, storage: Path | None = None, spec: JobSpec | None = None
) -> tuple[Path, Any]:
    """The checkpoint directory `target` names (a checkpoint directory; a run directory or run
    name under the storage root: its best checkpoint by `spec`'s ranking metric, else its
    latest) and the run's record (None for a checkpoint outside any run).

    Raises ModelSourceError naming what is missing."""
    storage = storage or storage_root_here()
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
