"""Run directories under the storage path: the record of a run and its checkpoints, so that
`resnetctl submit --resume RUN` continues the same Ray run and the same MLflow run."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

RECORD = "resnetctl-run.json"
CHECKPOINT_META = "meta.json"


def storage_root() -> Path:
    """`$RESNETCTL_STORAGE`, else `.resnetctl/runs` in the working directory, absolute."""
    return Path(os.environ.get("RESNETCTL_STORAGE", ".resnetctl/runs")).expanduser().resolve()


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

    def save(self, storage: Path) -> None:
        """Write the record into the run's directory."""
        folder = storage / self.run_name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")

    @classmethod
    def load(cls, storage: Path, run_name: str) -> RunRecord | None:
        """The record of `run_name`, or None if there is none."""
        path = storage / run_name / RECORD
        if not path.is_file():
            return None
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _checkpoints(folder: Path) -> list[tuple[dict, Path]]:
    found = []
    for meta in folder.rglob(CHECKPOINT_META):
        try:
            found.append((json.loads(meta.read_text(encoding="utf-8")), meta.parent))
        except (ValueError, OSError):
            continue
    return [(meta, path) for meta, path in found if isinstance(meta.get("epoch"), int)]


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint directory under `folder` with the highest epoch, or None."""
    found = _checkpoints(folder)
    return max(found, key=lambda pair: pair[0]["epoch"])[1] if found else None


def best_checkpoint(folder: Path, metric: str, mode: str) -> Path | None:
    """The checkpoint under `folder` whose finite `metric` ranks first (min or max)."""
    ranked = [
        (float(meta["metrics"][metric]), path)
        for meta, path in _checkpoints(folder)
        if math.isfinite(float(meta.get("metrics", {}).get(metric, math.nan)))
    ]
    if not ranked:
        return None
    pick = min if mode == "min" else max
    return pick(ranked, key=lambda pair: pair[0])[1]


#: `--resume latest`: the newest run of the same job under storage.
LATEST = "latest"


def latest_run(storage: Path, job: str) -> str | None:
    """The name of the newest run of `job` under `storage` (names sort by their UTC time)."""
    runs = [
        record.run_name
        for folder in (storage.iterdir() if storage.is_dir() else [])
        if (record := RunRecord.load(storage, folder.name)) is not None and record.job == job
    ]
    return max(runs, default=None)


def resolve_resume(
    target: str, storage: Path, job: str | None = None
) -> tuple[Path, RunRecord | None]:
    """Turn `--resume` (a run name under storage, `latest` for the newest run of `job`, or a
    checkpoint directory) into the checkpoint to load and, for a run, its record. Raises
    FileNotFoundError naming what is missing."""
    if target == LATEST and job is not None and not Path(target).exists():
        newest = latest_run(storage, job)
        if newest is None:
            raise FileNotFoundError(f"no run of job {job!r} under {storage} to resume")
        target = newest
    as_path = Path(target).expanduser()
    if (as_path / CHECKPOINT_META).is_file():
        return as_path.resolve(), None
    folder = as_path if as_path.is_dir() else storage / target
    if not folder.is_dir():
        known = sorted(p.name for p in storage.iterdir() if p.is_dir()) if storage.is_dir() else []
        hint = f"; known runs: {', '.join(known[-5:])}" if known else ""
        raise FileNotFoundError(f"no run or checkpoint named {target!r} under {storage}{hint}")
    checkpoint = latest_checkpoint(folder)
    if checkpoint is None:
        raise FileNotFoundError(f"run {target!r} ({folder}) has no checkpoint to resume from")
    return checkpoint, RunRecord.load(storage, folder.name)
