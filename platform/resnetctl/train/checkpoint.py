"""Training-state checkpoints: one directory holding `state.pt`, `meta.json` and, written
last, `manifest.json` (the format and its completeness rule live in `storage.checkpoints`, which
every reader shares).

`state.pt` is loaded with `torch.load(weights_only=True)`, so it holds only tensors and plain
Python containers: a checkpoint from an untrusted place cannot run code when loaded. Random
number generator states (and DALI's pipeline states) are converted to tensors and lists for that
reason. `meta.json` is small and human-readable (epoch, step, metrics) so tools can rank or list
checkpoints without loading tensors.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from resnetctl.spec.metrics import ranked_weights
from resnetctl.storage.checkpoints import FORMAT_VERSION, is_complete, load_state, write_manifest
from resnetctl.storage.checkpoints import MANIFEST as MANIFEST_FILE
from resnetctl.storage.checkpoints import META as META_FILE
from resnetctl.storage.checkpoints import STATE as STATE_FILE

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_FILE",
    "META_FILE",
    "STATE_FILE",
    "capture_rng_state",
    "is_checkpoint",
    "load_checkpoint",
    "ranked_weights",
    "read_meta",
    "restore_rng_state",
    "save_checkpoint",
    "unwrap",
]

#: Whether a directory is a complete checkpoint.
is_checkpoint = is_complete


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel (or the model itself)."""
    return getattr(model, "module", model)


def capture_rng_state() -> dict[str, Any]:
    """RNG states of torch (CPU and every CUDA device), numpy and Python, weights_only-safe."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    py_version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(py_version),
            "state": torch.tensor(py_state, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of `capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    npy = state["numpy"]
    keys = npy["keys"].numpy().astype(np.uint32)
    np.random.set_state((npy["kind"], keys, npy["pos"], npy["has_gauss"], npy["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["state"].tolist()), py["gauss"]))


def save_checkpoint(
    directory: str | os.PathLike[str], state: dict[str, Any], meta: dict[str, Any]
) -> Path:
    """Write `state.pt`, `meta.json` and then their manifest into `directory` (created if
    needed).

    Files are written under a temporary name and renamed, and the manifest comes last, so that
    a crash mid-write never leaves a folder that looks complete.
    """
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (STATE_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path / STATE_FILE)
    meta = {"format_version": FORMAT_VERSION, **meta}
    tmp_meta = path / (META_FILE + ".tmp")
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default))
    os.replace(tmp_meta, path / META_FILE)
    write_manifest(path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_checkpoint(
    directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read `(state, meta)` from a complete local checkpoint directory (`storage.checkpoints.
    load_state`: digests checked, `state.pt` with weights_only=True)."""
    return load_state(directory, map_location=map_location)


def read_meta(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Only the `meta.json` of a checkpoint (cheap: no tensors)."""
    return json.loads((Path(directory) / META_FILE).read_text())
