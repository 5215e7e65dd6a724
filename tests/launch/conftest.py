"""End-to-end fixtures: `resnetctl submit` in a subprocess of its own session, always reaped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.processes import free_port, http_up, kill_group, mlflow_client, wait_for

__all__ = ["free_port", "http_up", "kill_group", "wait_for"]  # imported from here by other tests

TINY_JOB = """\
name: tiny
model: {name: cifar_resnet8}
data:
  source: {kind: synthetic, num_classes: 4, train_per_class: 16, val_per_class: 4,
           image_size: [16, 16], seed: 3}
  pipeline: {kind: cifar, pad: 2, crop: 16}
  threads: 1
train:
  epochs: 3
  batch_size_per_worker: 8
  base_lr: 0.1
  lr_reference_batch: 16
  schedule: {kind: constant}
resources: {workers: 2, cpus_per_worker: 1}
checkpoint: {every_n_epochs: 1, keep: 2}
failure: {max_failures: 1}
tracking: {experiment: e2e}
"""


@dataclass
class Submitted:
    """A running or finished `resnetctl submit` process; its output goes to files, so a chatty
    Ray can never fill a pipe and stall it."""

    process: subprocess.Popen[str]
    stdout: Path
    stderr: Path

    def wait(self, timeout: float = 420) -> tuple[int, str, str]:
        self.process.wait(timeout=timeout)
        return self.process.returncode, self.stdout.read_text(), self.stderr.read_text()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "job.yaml").write_text(TINY_JOB)
    return tmp_path


def resnetctl(
    *args: str, cwd: Path, timeout: float = 420, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would. The suite's token reaches it by RAY_AUTH_TOKEN_PATH alone:
    no RAY_AUTH_MODE, which Ray's own clients would need."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return subprocess.run(
        [sys.executable, "-m", "resnetctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "RAY_ADDRESS": ""},
    )


@pytest.fixture
def submit(workdir: Path) -> Iterator:
    """Start `resnetctl submit` in `workdir`, in a new session so that the whole process group
    (the driver and the embedded Ray it starts) can be killed if the test fails."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> Submitted:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
        index = len(started)
        out, err = workdir / f"stdout-{index}.txt", workdir / f"stderr-{index}.txt"
        with out.open("w") as out_file, err.open("w") as err_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "resnetctl", "submit", *args],
                cwd=workdir,
                env=env,
                stdout=out_file,
                stderr=err_file,
                text=True,
                start_new_session=True,
            )
        started.append(process)
        return Submitted(process, out, err)

    yield start
    for process in started:
        kill_group(process)


def mlflow_runs(workdir: Path, experiment: str = "e2e") -> list:
    client = mlflow_client(workdir)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def metric_history(workdir: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    client = mlflow_client(workdir)
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def summary(stdout: str) -> dict:
    return json.loads(stdout)


# ---- a real two-node Ray cluster and an MLflow server, both on 127.0.0.1 -------------------


class Processes:
    """Processes started in sessions of their own, each killed with its whole group."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.started.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.started):
            kill_group(process)  # type: ignore[arg-type]


def start_mlflow(
    processes: Processes, logs: Path, artifacts: str, env: dict[str, str] | None = None
) -> str:
    """Start `mlflow server` on a free loopback port (sqlite store in `logs`, artifacts proxied
    to `artifacts`: a folder or a bucket URI) without its job runner, which would add ~2 GB of
    processes; returns its URL (see `mlflow_up`)."""
    port = free_port()
    processes.start(
        "mlflow",
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{logs / 'mlflow.db'}",
            "--artifacts-destination",
            artifacts,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {})},
    )
    return f"http://127.0.0.1:{port}"


def _mlflow_answers(url: str) -> bool:
    """Whether MLflow's REST API answers at `url`: not merely any server (a Ray process that took
    the port first answers 401 to everything)."""
    try:
        with urllib.request.urlopen(  # noqa: S310 (loopback only)
            f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=5
        ) as answer:
            return answer.status == 200 and "experiments" in json.loads(answer.read())
    except (OSError, ValueError):
        return False


def mlflow_up(url: str, logs: Path) -> None:
    """Wait until the server `start_mlflow` started answers; fail the test with its log if not.
    Call it before starting Ray beside the server: Ray's processes bind ports of their own while
    MLflow starts, and could take the one chosen for it."""
    assert wait_for(lambda: _mlflow_answers(url), 120), (logs / "mlflow.log").read_text()[-3000:]


def ray_head_argv(gcs_port: int, dashboard_port: int, *extra: str, cpus: int = 1) -> list[str]:
    """`ray start --head --block` with `cpus` CPUs (one by default), every port on 127.0.0.1
    and free."""
    return [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        f"--num-cpus={cpus}",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        *extra,
    ]


def short_temp_dir(prefix: str) -> Path:
    """A new folder under /tmp for a Ray node: Ray's Unix sockets live there, and their paths
    must stay short."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@dataclass
class RayNodes:
    """Ray nodes on 127.0.0.1: a head and worker nodes, each `ray start --block` in a session
    of its own (so that one node, its raylet and everything under it, can be killed alone)
    with a temp dir of its own (two raylets sharing one would share session and log folders,
    and every worker's output would reach a driver twice)."""

    gcs: str
    dashboard: str
    logs: Path
    env: dict[str, str]  # what every node gets on top of this process's environment
    processes: Processes
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    temp_dirs: list[Path] = field(default_factory=list)

    def add_worker(self, name: str) -> subprocess.Popen[bytes]:
        """Start a one-CPU worker node `name` (its output in `logs/name.log`) joining the head."""
        temp_dir = short_temp_dir(f"rcj-{name[:8]}-")
        self.temp_dirs.append(temp_dir)
        argv = [
            str(Path(sys.executable).parent / "ray"),
            "start",
            "--block",
            f"--address={self.gcs}",
            "--node-ip-address=127.0.0.1",
            "--num-cpus=1",
            f"--temp-dir={temp_dir}",
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        self.workers[name] = self.processes.start(name, argv, self.env)
        return self.workers[name]

    def kill_worker(self, name: str) -> None:
        """SIGKILL worker node `name`: its `ray start`, raylet and every process under them."""
        kill_group(self.workers[name])  # type: ignore[arg-type]

    def alive_nodes(self) -> list[dict]:
        """The cluster's alive nodes as `ray list nodes` reports them (node_id, is_head_node,
        ...); empty while the state API does not answer."""
        return ray_list(self.gcs, "nodes", "state=ALIVE")

    def wait_for_nodes(self, count: int, timeout: float = 90) -> list[dict]:
        """Wait until exactly `count` nodes are alive; returns them."""
        found: list[dict] = []

        def enough() -> bool:
            found[:] = self.alive_nodes()
            return len(found) == count

        assert wait_for(enough, timeout, interval=2), f"{len(found)} nodes alive, not {count}"
        return found


def ray_list(gcs: str, what: str, *filters: str) -> list[dict]:
    """`ray list WHAT --detail` of the cluster at `gcs` with `--filter`s: a list of dicts,
    empty when the state API does not answer."""
    argv = [str(Path(sys.executable).parent / "ray"), "list", what, f"--address={gcs}"]
    for condition in filters:
        argv += ["--filter", condition]
    done = subprocess.run(
        [*argv, "--detail", "--format", "json", "--limit", "1000"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    try:
        return list(json.loads(done.stdout))
    except ValueError:
        return []


@contextmanager
def two_node_cluster(
    logs: Path, env: dict[str, str] | None = None, head_cpus: int = 1
) -> Iterator[RayNodes]:
    """`ray start --head` and one `ray start --address` worker node ("worker"), one CPU each
    (the head `head_cpus`: 0 keeps training workers off it), every port on 127.0.0.1 and free,
    each node with its own session and temp dir, `env` (on top of this process's environment)
    given to both; every process is killed by process group and the temp dirs removed
    afterwards, also when a test fails."""
    import shutil

    bin_dir = Path(sys.executable).parent
    gcs_port, dash_port = free_port(), free_port()
    node_env = {
        "RAY_AUTH_MODE": "token",
        # The nodes run jobs with the `python` on their PATH: this venv's, as a cluster's image
        # would.
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        # Ray's state API (Ray Train's placement-group cleaner uses it) finds "the" Ray on a
        # machine by scanning for GCS processes, and fails when other Rays run here too.
        "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dash_port}",
        **(env or {}),
    }
    nodes = RayNodes(
        f"127.0.0.1:{gcs_port}",
        f"http://127.0.0.1:{dash_port}",
        logs,
        node_env,
        Processes(logs),
        temp_dirs=[short_temp_dir("rcj-head-")],
    )
    try:
        nodes.processes.start(
            "head",
            ray_head_argv(
                gcs_port, dash_port, f"--temp-dir={nodes.temp_dirs[0]}", cpus=head_cpus
            ),
            node_env,
        )
        assert wait_for(lambda: http_up(f"{nodes.dashboard}/api/version"), 90), (
            logs / "head.log"
        ).read_text()[-3000:]
        nodes.add_worker("worker")
        os.environ["RAY_AUTH_MODE"] = "token"
        nodes.wait_for_nodes(2, timeout=60)
        yield nodes
    finally:
        nodes.processes.stop()
        os.environ.pop("RAY_AUTH_MODE", None)
        for folder in nodes.temp_dirs:
            shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Cluster:
    """A running two-node Ray cluster and MLflow server."""

    dashboard: str
    gcs: str
    mlflow: str
    logs: Path
    nodes: RayNodes


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`two_node_cluster` and an MLflow server keeping artifacts in a local folder, all on
    127.0.0.1 on free ports; every process is killed by process group afterwards, also when a
    test fails."""
    logs = tmp_path_factory.mktemp("cluster-logs")
    server = Processes(logs)
    try:
        mlflow = start_mlflow(server, logs, str(logs / "artifacts"))
        mlflow_up(mlflow, logs)  # first: its port taken before Ray's processes take theirs
        with two_node_cluster(logs) as nodes:
            yield Cluster(nodes.dashboard, nodes.gcs, mlflow, logs, nodes)
    finally:
        server.stop()
