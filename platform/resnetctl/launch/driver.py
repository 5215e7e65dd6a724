"""The process that drives a run, recorded in the run's folder: its host, PID and start time.

`resnetctl stop RUN` sends that process SIGTERM, which `submit` handles as it handles Ctrl-C
(`cli/interrupt.py`), and `status RUN` tells a run whose driver still runs from one whose driver
is gone without having recorded the run's end. The start time tells the recorded process from a
later one that was given the same PID.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import asdict, dataclass

from resnetctl.storage import StoragePath

DRIVER_FILE = "resnetctl-driver.json"
#: Seconds two readings of a process's start time may differ by and still be one process.
_START_TOLERANCE_S = 1.0


def _started(pid: int) -> float | None:
    """When process `pid` of this host started (seconds since the epoch), or None if none runs."""
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # ended, not yet reaped by its parent
            return None
        return float(process.create_time())
    except psutil.Error:
        return None


@dataclass(frozen=True)
class Driver:
    """Where a run's driver process runs, and which process it is."""

    host: str
    pid: int
    started: float

    @classmethod
    def this_process(cls) -> Driver:
        """The process calling this."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _started(pid) or 0.0)

    def save(self, folder: StoragePath) -> None:
        """Record this driver in the run's folder (replacing the previous driver's record)."""
        (folder / DRIVER_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: StoragePath) -> Driver | None:
        """The driver recorded in the run's folder; None for a run that recorded none."""
        try:
            data = json.loads((folder / DRIVER_FILE).read_text())
            return cls(str(data["host"]), int(data["pid"]), float(data["started"]))
        except (FileNotFoundError, OSError, ValueError, KeyError, TypeError):
            return None

    @property
    def on_this_host(self) -> bool:
        """Whether the driver runs (or ran) on the machine calling this."""
        return self.host == socket.gethostname()

    def alive(self) -> bool:
        """Whether the recorded process still runs; False on another host (it cannot be seen
        from here: check `on_this_host` first)."""
        if not self.on_this_host:
            return False
        now = _started(self.pid)
        return now is not None and abs(now - self.started) <= _START_TOLERANCE_S

    def describe(self) -> str:
        """`pid N on HOST`."""
        return f"pid {self.pid} on {self.host}"


def mark_driver(folder: StoragePath) -> Driver:
    """Record this process as the run's driver, and drop the summary an earlier job of the same
    run left (a resumed run writes its own when it ends)."""
    from resnetctl.launch.outcome import SUMMARY_FILE

    driver = Driver.this_process()
    driver.save(folder)
    stale = folder / SUMMARY_FILE
    try:
        stale.fs.delete_file(stale.path)
    except (FileNotFoundError, OSError):
        pass
    return driver
