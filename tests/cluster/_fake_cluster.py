"""A fake multi-node autoscaling Ray cluster for tests, started and ended by PID.

`ray.cluster_utils.AutoscalingCluster` cannot be used: its config template is missing from the
wheel and its start/shutdown run `ray stop --force`, which would end every other engineer's Ray
on this machine. This starts `ray start --head --block` with `cluster/local.yaml` in a session
of its own, on free loopback ports and a private temp dir, and on exit kills exactly the
processes of that session plus any process whose command line names the private temp dir.

Where the fake nodes live: the `fake_multinode` provider runs inside the head's autoscaler
(`monitor.py`) and starts each worker node in-process with `ray._private.node.Node(...)`; it keeps
the node table only in that process's memory (unlike the docker variant, there is no state file).
Those raylets and their workers inherit the head's session and the `--temp-dir`, which is how
they are found here.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class FakeCluster:
    """A running fake cluster: its address, environment for clients, and node sampling."""

    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    env: dict[str, str]
    head: subprocess.Popen[bytes] | None = None
    others: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    def alive_nodes(self) -> list[dict[str, Any]]:
        """The ALIVE nodes, from the dashboard's state API (raises until the dashboard is up)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.dashboard_port}/api/v0/nodes?limit=100&detail=true",
            headers={"Authorization": f"Bearer {self.env['RAY_AUTH_TOKEN']}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = json.load(response)
        nodes = payload["data"]["result"]["result"]
        return [n for n in nodes if n.get("state") == "ALIVE"]

    def start_process(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        """Start a client process (a driver) in a session of its own, with the cluster's env."""
        with log.open("wb") as out:
            process = subprocess.Popen(
                args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.others.append(process)
        return process

    def processes(self) -> list[psutil.Process]:
        """Every live process this cluster started: the sessions we created, and whatever names
        the private temp dir (raylets, workers, agents of fake nodes)."""
        sessions = {p.pid for p in [self.head, *self.others] if p is not None}
        marker = str(self.temp_dir)
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == os.getpid():
                continue
            try:
                mine = os.getsid(proc.pid) in sessions
                if not mine:
                    mine = any(marker in part for part in proc.info["cmdline"] or [])
                if mine and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(proc)
            except (psutil.Error, ProcessLookupError, PermissionError):
                continue
        return found

    def kill_all(self, grace: float = 10.0) -> list[psutil.Process]:
        """SIGTERM, then SIGKILL, every process of the cluster; returns survivors (none)."""
        for process in [self.head, *self.others]:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        procs = self.processes()
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.terminate()
        _, alive = psutil.wait_procs(procs, timeout=grace)
        for proc in alive + self.processes():
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=grace)
        for process in [self.head, *self.others]:
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=grace)
        deadline = time.monotonic() + grace
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return left


def cluster_config(
    source: Path, idle_timeout_minutes: float, max_cpu_workers: int | None = None
) -> dict[str, Any]:
    """`cluster/local.yaml` with a short idle timeout for tests."""
    config = yaml.safe_load(source.read_text())
    config["idle_timeout_minutes"] = idle_timeout_minutes
    if max_cpu_workers is not None:
        config["available_node_types"]["cpu.1"]["max_workers"] = max_cpu_workers
    return config


@contextlib.contextmanager
def fake_cluster(
    config: dict[str, Any], logs: Path, ready_timeout: float = 90.0
) -> Iterator[FakeCluster]:
    """Start the head with `config` as its autoscaling config; always kill everything after."""
    # Unix sockets live under the temp dir: keep its path far below the ~107-byte limit.
    temp_dir = Path(tempfile.mkdtemp(prefix="rc-", dir="/tmp"))
    gcs_port = free_port()
    # The fake nodes dial <machine IP>:6379 unless told where our GCS is.
    config = {**config, "provider": {**config["provider"], "gcs_address": f"127.0.0.1:{gcs_port}"}}
    config_file = temp_dir / "autoscaling.yaml"
    config_file.write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "RAY_FAKE_CLUSTER": "1",
        # Every node (also the fake ones, which pick their own IP) on loopback.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",
        # A token of our own, in the environment: nothing reads or rewrites ~/.ray/auth_token,
        # which other Ray clusters on this machine use.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    cluster = FakeCluster(temp_dir, gcs_port, free_port(), env)
    env["RAY_ADDRESS"] = cluster.address
    head_env = {k: v for k, v in env.items() if k != "RAY_ADDRESS"}
    args = [
        RAY,
        "start",
        "--head",
        "--block",
        f"--autoscaling-config={config_file}",
        "--num-cpus=0",
        "--node-ip-address=127.0.0.1",
        f"--port={cluster.gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={cluster.dashboard_port}",
        f"--ray-client-server-port={free_port()}",
        "--dashboard-agent-listen-port=0",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    try:
        with (logs / "head.log").open("wb") as out:
            cluster.head = subprocess.Popen(
                args, env=head_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + ready_timeout
        while True:
            if cluster.head.poll() is not None:
                raise RuntimeError(f"ray start exited: {(logs / 'head.log').read_text()[-3000:]}")
            try:
                if cluster.alive_nodes():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the fake cluster's dashboard did not come up")
            time.sleep(1)
        yield cluster
    finally:
        survivors = cluster.kill_all()
        _keep_logs(temp_dir, logs)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not survivors, f"processes left behind: {survivors}"


def _keep_logs(temp_dir: Path, logs: Path) -> None:
    # The autoscaler's log tells why a node was (not) started: keep it for a failed test.
    for name in ("monitor.log", "monitor.out", "monitor.err"):
        for found in temp_dir.glob(f"session_*/logs/{name}"):
            with contextlib.suppress(OSError):
                shutil.copy(found, logs / name)
