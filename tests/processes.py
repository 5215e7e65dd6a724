"""What every test that starts a process or a server needs: free loopback ports, waiting for a
condition, killing a process's whole group, and the MLflow store a test's job writes.

One place for them, so that every test stops what it started the same way (by process group,
descendants that left the group included) and never anything it did not start."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 1.0) -> bool:
    """Poll `predicate` until it is true (True) or `timeout` seconds have passed (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def http_up(url: str) -> bool:
    """Whether a server answers at `url` (any HTTP status: a 401 without a token is an answer)."""
    try:
        urllib.request.urlopen(url, timeout=2)  # noqa: S310 (loopback only)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL the process group of `process` (started with `start_new_session=True`) and any
    descendant that left it, then reap them, and remove the `pymp-*` folders they listened in
    (a Ray head's dashboard keeps one, which only a normal exit removes)."""
    from resnetctl.launch.embedded import multiprocessing_folders

    if process.poll() is not None:
        return
    folders = multiprocessing_folders(process.pid)
    try:
        descendants = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in descendants:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=60)
    psutil.wait_procs(descendants, timeout=30)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def command_lines(processes: list[psutil.Process]) -> list[tuple[psutil.Process, str]]:
    """Each process with its command line, leaving out those that ended meanwhile: a process
    listed a moment ago may be gone when its command line is read (Ray's short-lived actors)."""
    found = []
    for process in processes:
        try:
            found.append((process, " ".join(process.cmdline())))
        except psutil.Error:
            continue
    return found


def mlflow_client(workdir: Path) -> Any:
    """A client of the sqlite MLflow store that a job run in `workdir` writes."""
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
