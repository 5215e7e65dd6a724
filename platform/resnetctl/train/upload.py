"""Getting a checkpoint from a worker's disk into the run's storage, manifest last.

A checkpoint is first written whole into a local staging folder (`staging_dir`), then uploaded
by Ray Train (in the background with `checkpoint.upload: async`) through `upload_checkpoint`:
the data files first, the manifest last, so that a folder in the storage whose manifest exists is
complete (`storage.checkpoints`). Ray deletes the staging folder once the upload is done; a
worker that died before that leaves it behind, and the next worker of the same run on that node
removes it (`clear_stale_staging`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from resnetctl.storage.checkpoints import MANIFEST

log = logging.getLogger(__name__)

#: A fault-injection switch for the test suite and for trying the guarantee by hand: seconds to
#: wait between a checkpoint's data files and its manifest, so that a worker can be killed
#: while its checkpoint is half uploaded. Unset in normal runs.
SLOW_UPLOAD_ENV = "RESNETCTL_FAULT_UPLOAD_DELAY_S"

_STAGING_PREFIX = "resnetctl-ckpt-"
_last = {"seconds": 0.0}
_lock = threading.Lock()


def _prefix(run_name: str) -> str:
    return f"{_STAGING_PREFIX}{run_name}-"


def staging_dir(run_name: str) -> Path:
    """A new local folder to write one checkpoint of `run_name` into."""
    return Path(tempfile.mkdtemp(prefix=_prefix(run_name)))


def clear_stale_staging(run_name: str) -> None:
    """Remove staging folders that an earlier worker of this run left on this node (it died
    before its upload finished). Only rank 0 writes checkpoints, so at its start there is no
    other live writer of this run here."""
    root = Path(tempfile.gettempdir())
    for folder in root.glob(_prefix(run_name) + "*"):
        shutil.rmtree(folder, ignore_errors=True)


def last_upload_seconds() -> float:
    """How long the last checkpoint upload of this process took (0 before the first)."""
    with _lock:
        return _last["seconds"]


def upload_checkpoint(checkpoint: Any, checkpoint_dir_name: str) -> Any:
    """Ray Train's `checkpoint_upload_fn`: copy the checkpoint's files into the run's storage,
    the manifest last; returns the persisted `ray.train.Checkpoint`."""
    import ray.train
    from pyarrow import fs as pafs

    storage = ray.train.get_context().get_storage()
    destination = storage.build_checkpoint_path_from_name(checkpoint_dir_name)
    filesystem = storage.storage_filesystem
    started = time.monotonic()
    filesystem.create_dir(destination, recursive=True)
    source = Path(checkpoint.path)
    files = sorted(p for p in source.iterdir() if p.is_file())
    delay = float(os.environ.get(SLOW_UPLOAD_ENV) or 0)
    for path in [p for p in files if p.name != MANIFEST] + [p for p in files if p.name == MANIFEST]:
        if path.name == MANIFEST and delay:
            log.warning("%s=%s: waiting before the manifest of %s", SLOW_UPLOAD_ENV, delay, source)
            time.sleep(delay)
        pafs.copy_files(
            str(path),
            f"{destination}/{path.name}",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=filesystem,
        )
    seconds = time.monotonic() - started
    with _lock:
        _last["seconds"] = seconds
    log.info("checkpoint %s uploaded in %.2f s", checkpoint_dir_name, seconds)
    return ray.train.Checkpoint(path=destination, filesystem=filesystem)
