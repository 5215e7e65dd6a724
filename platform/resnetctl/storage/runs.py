"""Run directories under the storage root: the record of a run and its checkpoints, so that
`resnetctl submit --resume RUN` continues the same Ray run and the same MLflow run, and
`list`, `analyze`, `tune` and `reproduce` find them, on local disk or in a bucket alike."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from resnetctl.storage.checkpoints import META as CHECKPOINT_META
from resnetctl.storage.checkpoints import (
    completeness,
    is_complete,
    load_state,
    progress_key,
    scan,
    warn_incomplete,
)
from resnetctl.storage.location import StoragePath

RECORD = "resnetctl-run.json"

Location = StoragePath | str | os.PathLike[str]


def new_run_name(job: str) -> str:
    """`<job>-<UTC timestamp>`: unique per submit, sortable."""
    return f"{job}-{datetime.utcnow():%Y%m%d-%H%M%S}"


@dataclass(frozen=True)
class RunRecord:
    """What a run needs to be found and continued."""

    run_name: str
    job: str
    mlflow_uri: str
    mlflow_run_id: str

    def save(self, storage: Location) -> StoragePath:
        """Write the record into the run's directory; returns where it went."""
        path = StoragePath.of(storage) / self.run_name / RECORD
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, storage: Location, run_name: str) -> RunRecord | None:
        """The record of `run_name`, or None if there is none."""
        path = StoragePath.of(storage) / run_name / RECORD
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None


def checkpoints(folder: Location) -> list[tuple[dict, StoragePath]]:
    """`(meta.json contents, checkpoint directory)` of every complete checkpoint below
    `folder` that says its epoch: one listing of the folder, then the small manifest and meta
    files. An incomplete one (a worker died while writing it) is skipped with a warning that
    names it (`storage.checkpoints`)."""
    found = []
    for path, verdict in scan(folder):
        if not verdict:
            warn_incomplete(path, verdict.reason)
            continue
        try:
            meta = json.loads((path / CHECKPOINT_META).read_text())
        except (ValueError, OSError):
            continue
        if isinstance(meta.get("epoch"), int):
            found.append((meta, path))
    return found


def remove_incomplete(folder: Location) -> list[StoragePath]:
    """Delete the incomplete checkpoint folders below `folder` (left by workers that died
    while writing them); returns what was removed. Only safe once no worker of the run is
    writing: the driver calls it when the run has ended."""
    removed = []
    for path, verdict in scan(folder):
        if not verdict:
            path.fs.delete_dir(path.path)
            removed.append(path)
    return removed


def is_checkpoint(path: Location) -> bool:
    """Whether `path` (local or a URI) is a complete checkpoint directory."""
    return is_complete(path)


def latest_checkpoint(folder: Location) -> StoragePath | None:
    """The complete checkpoint under `folder` that trained furthest (by optimiser step: a
    checkpoint from the middle of an epoch is later than the end of the epoch before), or
    None."""
    found = checkpoints(folder)
    return max(found, key=lambda pair: progress_key(pair[0]))[1] if found else None


def best_checkpoint(folder: Location, metric: str, mode: str) -> StoragePath | None:
    """The checkpoint under `folder` whose finite `metric` ranks first (min or max)."""
    ranked = [
        (float(meta["metrics"][metric]), path)
        for meta, path in checkpoints(folder)
        if math.isfinite(float(meta.get("metrics", {}).get(metric, math.nan)))
    ]
    if not ranked:
        return None
    pick = min if mode == "min" else max
    return pick(ranked, key=lambda pair: pair[0])[1]


def list_runs(storage: Location) -> list[RunRecord]:
    """Every run recorded under `storage`, oldest first (names sort by their UTC time)."""
    root = StoragePath.of(storage)
    records = [RunRecord.load(root, folder.name) for folder in root.iterdir()]
    return sorted((r for r in records if r is not None), key=lambda r: r.run_name)


#: `--resume latest`: the newest run of the same job under storage.
LATEST = "latest"


def latest_run(storage: Location, job: str) -> str | None:
    """The name of the newest run of `job` under `storage` (names sort by their UTC time)."""
    return max((r.run_name for r in list_runs(storage) if r.job == job), default=None)


def resolve_resume(
    target: str, storage: Location, job: str | None = None
) -> tuple[StoragePath, RunRecord | None]:
    """Turn `--resume` (a run name under storage, `latest` for the newest run of `job`, or a
    checkpoint directory, local or a URI) into the checkpoint to load and, for a run, its
    record. Raises FileNotFoundError naming what is missing."""
    root = StoragePath.of(storage)
    if target == LATEST and job is not None and not Path(target).exists():
        newest = latest_run(root, job)
        if newest is None:
            raise FileNotFoundError(f"no run of job {job!r} under {root} to resume")
        target = newest
    given = StoragePath.of(target)
    if (given / CHECKPOINT_META).is_file():
        verdict = completeness(given)
        if not verdict:
            raise FileNotFoundError(f"{target} is an incomplete checkpoint: {verdict.reason}")
        return given, None
    folder = given if given.is_dir() else root / target
    if not folder.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir())
        hint = f"; known runs: {', '.join(known[-5:])}" if known else ""
        raise FileNotFoundError(f"no run or checkpoint named {target!r} under {root}{hint}")
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise FileNotFoundError(f"run {target!r} ({folder}) has no checkpoint to resume from")
    return checkpoint, RunRecord.load(root, folder.name)


def load_checkpoint(location: Location, map_location: str = "cpu") -> tuple[dict, dict]:
    """`(state, meta)` of a complete checkpoint directory, local or in a bucket (downloaded
    to a temporary folder first: `torch.load(weights_only=True)` reads local files only)."""
    with StoragePath.of(location).local() as directory:
        return load_state(directory, map_location=map_location)
