"""A run of the run storage as `status`, `logs` and `stop` see it: whether it runs, where its
driver is, how it ended, its summary and its log.

The state is said in the words of Ray Jobs, so that a local run and a cluster job read alike:
RUNNING, SUCCEEDED, FAILED, STOPPED. It comes from the MLflow run (RUNNING, FINISHED, FAILED,
KILLED) and, while MLflow says RUNNING, from the driver recorded in the run's folder: a driver
that is gone left a run that will never end by itself.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from resnetctl.launch.driver import Driver
from resnetctl.launch.joblog import log_location
from resnetctl.launch.outcome import RunSummary
from resnetctl.storage import RunRecord, StorageError, StoragePath

#: MLflow's end states in Ray Jobs' words.
_ENDED = {"FINISHED": "SUCCEEDED", "FAILED": "FAILED", "KILLED": "STOPPED"}


class RunStateError(RuntimeError):
    """A run that cannot be found or acted on; the message says why."""


@dataclass
class StoredRun:
    """A run of the run storage, read now."""

    record: RunRecord
    folder: StoragePath
    driver: Driver | None
    mlflow_status: str | None  # None when the tracking store does not answer
    summary: RunSummary | None

    @property
    def name(self) -> str:
        return self.record.run_name

    @property
    def state(self) -> str:
        """RUNNING, SUCCEEDED, FAILED or STOPPED (UNKNOWN when MLflow does not answer)."""
        if self.mlflow_status in _ENDED:
            return _ENDED[self.mlflow_status]
        if self.mlflow_status is None:
            return "UNKNOWN"
        if self.driver is not None and self.driver.on_this_host and not self.driver.alive():
            return "FAILED"  # MLflow still says RUNNING, but nothing will ever end the run
        return "RUNNING"

    @property
    def message(self) -> str:
        """Why the state is what it is, where that is not obvious."""
        if self.mlflow_status is None:
            return f"the tracking store {self.record.mlflow_uri} does not answer"
        if self.mlflow_status != "RUNNING":
            return self.summary.headline() if self.summary else ""
        if self.driver is None:
            return "no driver recorded for this run"
        if not self.driver.on_this_host:
            return f"driver {self.driver.describe()}"
        if not self.driver.alive():
            return (
                f"its driver ({self.driver.describe()}) is gone without recording the run's "
                "end (killed?); MLflow still says RUNNING; continue it with --resume"
            )
        return f"driver {self.driver.describe()}"

    def as_dict(self) -> dict[str, Any]:
        """What `status --json` prints for a local run (the same keys as for a cluster job)."""
        return {
            "run_name": self.name,
            "state": self.state,
            "message": self.message,
            "where": "local",
            "job": None,
            "driver": None if self.driver is None else {**vars(self.driver)},
            "mlflow_uri": self.record.mlflow_uri,
            "mlflow_run_id": self.record.mlflow_run_id,
            "mlflow_status": self.mlflow_status,
            "storage_path": str(self.folder),
            "summary": None if self.summary is None else self.summary.as_dict(),
        }

    def log_file(self) -> StoragePath | Path:
        """Where the run's log is now: the run's folder, or for a run kept in a bucket whose
        driver runs here, the local file it writes until it ends."""
        local, kept = log_location(self.folder.parent, self.name)
        if kept is not None and self.driver is not None and self.driver.alive() and local.exists():
            return local
        return kept if kept is not None else local


def find_run(name: str, storage: StoragePath) -> StoredRun | None:
    """The run `name` under `storage`, read now; None when there is no such run."""
    record = RunRecord.load(storage, name)
    if record is None:
        return None
    folder = storage / name
    return StoredRun(
        record, folder, Driver.load(folder), _mlflow_status(record), RunSummary.load(folder)
    )


def known_runs(storage: StoragePath, last: int = 5) -> list[str]:
    """The names of the newest runs under `storage`, for an error message."""
    from resnetctl.storage import list_runs

    try:
        return [r.run_name for r in list_runs(storage)][-last:]
    except (StorageError, OSError):
        return []


def _mlflow_status(record: RunRecord) -> str | None:
    """The MLflow status of the run (RUNNING, FINISHED, FAILED, KILLED), or None when the
    store does not answer within a few seconds (a listing must not hang)."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    try:
        from mlflow import MlflowClient

        return str(MlflowClient(record.mlflow_uri).get_run(record.mlflow_run_id).info.status)
    except Exception:  # noqa: BLE001 - an unreachable server, a deleted run, a bad URI
        return None


def stop_run(
    run: StoredRun,
    storage: StoragePath,
    *,
    timeout_s: float = 300.0,
    poll_s: float = 0.5,
    on_wait: Callable[[], None] | None = None,
) -> StoredRun:
    """End a running run as Ctrl-C in its terminal would: SIGTERM to its driver, which stops
    the workers, keeps the checkpoint and marks the MLflow run KILLED; then wait until the
    driver has exited and MLflow no longer says RUNNING. Returns the run as it is then (still
    RUNNING after `timeout_s`). Raises `RunStateError` when the run cannot be stopped from here.
    A run that has already ended is returned as it is."""
    if run.mlflow_status != "RUNNING":
        return run
    driver = run.driver
    if driver is None:
        raise RunStateError(f"run {run.name} records no driver process, so it cannot be stopped")
    if not driver.on_this_host:
        raise RunStateError(
            f"run {run.name} is driven from another machine ({driver.describe()}): run "
            f"`resnetctl stop {run.name}` there, or for a job sent to a cluster, "
            f"`resnetctl stop {run.name} --address http://HEAD:8265`"
        )
    if not driver.alive():
        raise RunStateError(f"run {run.name}: {run.message}")
    try:
        os.kill(driver.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # it ended meanwhile
    except PermissionError:
        raise RunStateError(
            f"run {run.name}: not allowed to signal its driver ({driver.describe()}), which "
            "another user runs"
        ) from None
    deadline = time.monotonic() + timeout_s
    current = run
    while time.monotonic() < deadline:
        time.sleep(poll_s)
        current = find_run(run.name, storage) or current
        if not driver.alive() and current.mlflow_status != "RUNNING":
            break
        if on_wait is not None:
            on_wait()
    return current


def follow_log(
    run: StoredRun,
    storage: StoragePath,
    out: IO[str],
    *,
    follow: bool,
    poll_s: float = 0.5,
) -> None:
    """Write the run's log to `out`; with `follow`, keep writing what is appended until the
    run's driver has ended. A log kept in a bucket is written once, as it is."""
    path = run.log_file()
    if not isinstance(path, Path):
        try:
            out.write(path.read_text())
        except (FileNotFoundError, OSError):
            raise RunStateError(f"run {run.name} has no log at {path} yet") from None
        return
    if not path.exists() and not follow:
        raise RunStateError(f"run {run.name} has no log at {path} yet")
    position = 0
    while True:
        position = _copy_from(path, position, out)
        running = run.driver is not None and run.driver.alive()
        if not follow or not running:
            _copy_from(path, position, out)
            return
        time.sleep(poll_s)
        run = find_run(run.name, storage) or run


def _copy_from(path: Path, position: int, out: IO[str]) -> int:
    """Write `path` from byte `position` to `out`; returns the new position."""
    try:
        with path.open("rb") as log:
            log.seek(position)
            data = log.read()
    except FileNotFoundError:
        return position
    if data:
        out.write(data.decode("utf-8", errors="replace"))
        out.flush()
    return position + len(data)
