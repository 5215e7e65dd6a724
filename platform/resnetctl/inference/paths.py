"""Where a model source is, as a path: torch-free, for the job spec's `model.init.source`."""

from __future__ import annotations

from pathlib import Path


class ModelSourceError(ValueError):
    """MODEL names nothing loadable; the message says what was looked for."""


def storage_root_here() -> Path:
    """The run storage root as a local folder; an object store is refused with advice."""
    from resnetctl.storage import storage_root

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
