"""End-to-end fixtures: `resnetctl submit` in a subprocess of its own session, always reaped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def _kill_group(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)


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
        _kill_group(process)


def mlflow_runs(workdir: Path, experiment: str = "e2e") -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def metric_history(workdir: Path, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def summary(stdout: str) -> dict:
    return json.loads(stdout)


def wait_for(predicate, timeout: float, interval: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
