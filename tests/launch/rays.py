"""The Ray processes on the machine: a Ray of our own, and another one.

Another Ray is what a user's `ray start --head` leaves: running, with Ray's
address file (`ray_current_cluster`) naming it in Ray's temp folder, where `ray.init()` without an
address looks. The folder is a fresh one passed as `RAY_TMPDIR` (Ray's own override of /tmp), so
that the test reproduces the failure without touching the machine's /tmp/ray; whoever runs
`resnetctl` must get the same `RAY_TMPDIR`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.launch.conftest import Processes, free_port, ray_head_argv, wait_for


@dataclass
class ForeignRay:
    """A running one-node Ray head that is not ours."""

    gcs: str
    temp_root: Path  # the RAY_TMPDIR it was started with
    processes: Processes

    @property
    def env(self) -> dict[str, str]:
        """What a process needs in its environment to see this Ray as Ray on this machine does."""
        return {"RAY_TMPDIR": str(self.temp_root)}

    @property
    def address_file(self) -> Path:
        return self.temp_root / "ray" / "ray_current_cluster"

    @property
    def running(self) -> bool:
        return self.processes.started[0].poll() is None

    def nodes_and_jobs(self) -> tuple[int, int]:
        """Its alive nodes and its jobs (drivers that connected), from its state API."""
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from ray.util.state import list_jobs, list_nodes; "
                f"nodes = list_nodes(address={self.gcs!r}, filters=[('state', '=', 'ALIVE')]); "
                f"print(len(nodes), len(list_jobs(address={self.gcs!r})))",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "RAY_AUTH_MODE": "token"},
        )
        assert done.returncode == 0, done.stderr[-2000:]
        nodes, jobs = done.stdout.split()
        return int(nodes), int(jobs)


@contextmanager
def foreign_ray(logs: Path) -> Iterator[ForeignRay]:
    """`ray start --head` (one CPU, free loopback ports) with a temp folder of its own, killed
    with its process group afterwards; the folder is removed."""
    temp_root = Path(tempfile.mkdtemp(prefix="rf-", dir="/tmp"))  # short: Ray's sockets live there
    processes = Processes(logs)
    gcs_port = free_port()
    try:
        processes.start(
            "foreign-head",
            ray_head_argv(gcs_port, free_port()),
            {"RAY_TMPDIR": str(temp_root), "RAY_AUTH_MODE": "token"},
        )
        foreign = ForeignRay(f"127.0.0.1:{gcs_port}", temp_root, processes)
        # `ray start` writes the address file once the head runs.
        assert wait_for(foreign.address_file.exists, 90), (logs / "foreign-head.log").read_text()
        yield foreign
    finally:
        processes.stop()
        shutil.rmtree(temp_root, ignore_errors=True)


def stale_address_file(temp_root: Path) -> Path:
    """An address file in `temp_root` (a RAY_TMPDIR) naming a cluster that is gone: a loopback
    port nothing listens on, as a crashed head leaves it."""
    address_file = temp_root / "ray" / "ray_current_cluster"
    address_file.parent.mkdir(parents=True)
    address_file.write_text(f"127.0.0.1:{free_port()}")
    return address_file


def session_processes(session: int) -> list[psutil.Process]:
    """Live processes of a session: a command started as a session leader and everything it and
    its Ray started (Ray's daemons and workers stay in the session)."""
    found = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (OSError, psutil.Error):  # gone meanwhile
            continue
    return found
