"""End-to-end fixtures: `resnetctl submit` in a subprocess of its own session, always reaped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
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

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.started.append(
            subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        )

    def stop(self) -> None:
        for process in reversed(self.started):
            kill_group(process)  # type: ignore[arg-type]


def ray_head_argv(gcs_port: int, dashboard_port: int, *extra: str) -> list[str]:
    """`ray start --head --block` with one CPU, every port on 127.0.0.1 and free."""
    return [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--num-cpus=1",
        f"--ray-client-server-port={free_port()}",
        f"--dashboard-agent-listen-port={free_port()}",
        *extra,
    ]


@dataclass
class Cluster:
    """A running two-node Ray cluster and MLflow server."""

    dashboard: str
    gcs: str
    mlflow: str
    logs: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """`ray start --head` and a second `ray start --address` (one CPU each) and an MLflow
    server, all bound to 127.0.0.1 on free ports; every process is killed by process group
    afterwards, also when a test fails."""
    import tempfile

    bin_dir = Path(sys.executable).parent
    logs = tmp_path_factory.mktemp("cluster-logs")
    # Ray's Unix sockets live under the temp dir: keep its path short.
    temp_dir = Path(tempfile.mkdtemp(prefix="rcj-", dir="/tmp"))
    gcs_port, dash_port, mlflow_port = free_port(), free_port(), free_port()
    processes = Processes(logs)
    # The nodes run jobs with the `python` on their PATH: this venv's, as a cluster's image would.
    env = {"RAY_AUTH_MODE": "token", "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    try:
        processes.start(
            "mlflow",
            [
                str(bin_dir / "mlflow"),
                "server",
                "--backend-store-uri",
                f"sqlite:///{logs / 'mlflow.db'}",
                "--artifacts-destination",
                str(logs / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
        )
        processes.start(
            "head",
            ray_head_argv(gcs_port, dash_port, f"--temp-dir={temp_dir}"),
            env,
        )
        dashboard = f"http://127.0.0.1:{dash_port}"
        assert wait_for(lambda: http_up(f"{dashboard}/api/version"), 90), "Ray head did not start"
        processes.start(
            "worker",
            [
                str(bin_dir / "ray"),
                "start",
                "--block",
                f"--address=127.0.0.1:{gcs_port}",
                "--node-ip-address=127.0.0.1",
                "--num-cpus=1",
                f"--dashboard-agent-listen-port={free_port()}",
            ],
            env,
        )
        mlflow = f"http://127.0.0.1:{mlflow_port}"
        assert wait_for(lambda: http_up(f"{mlflow}/health"), 90), "MLflow server did not start"
        os.environ["RAY_AUTH_MODE"] = "token"

        def two_nodes() -> bool:
            return _alive_nodes(f"127.0.0.1:{gcs_port}") == 2

        assert wait_for(two_nodes, 60, interval=2), "second node did not join"
        yield Cluster(dashboard, f"127.0.0.1:{gcs_port}", mlflow, logs)
    finally:
        processes.stop()
        os.environ.pop("RAY_AUTH_MODE", None)
        import shutil

        shutil.rmtree(temp_dir, ignore_errors=True)


def _alive_nodes(gcs: str) -> int:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"),
            "list",
            "nodes",
            f"--address={gcs}",
            "--filter",
            "state=ALIVE",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    try:
        return len(json.loads(done.stdout))
    except ValueError:
        return 0
