"""Fixtures of the sweep tests: `tune` in-process for input errors, and in a subprocess of its
own session (driver and embedded Ray killed as one process group) for real sweeps."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from resnetctl.cli.tune import tune as tune_command
from tests.processes import kill_group, mlflow_client, wait_for

__all__ = ["kill_group", "wait_for"]  # imported from here by other tests

# 4 classes of 16x16 images; cifar_resnet8 learns them in a few steps.
TINY_BASE = """\
name: tiny-sweep
model: {name: cifar_resnet8}
data:
  source: {kind: synthetic, num_classes: 4, train_per_class: 16, val_per_class: 4,
           image_size: [16, 16], seed: 3}
  pipeline: {kind: cifar, pad: 2, crop: 16}
  threads: 1
train:
  epochs: 1
  batch_size_per_worker: 8
  base_lr: 0.1
  lr_reference_batch: 8
  schedule: {kind: constant}
resources: {workers: 1, cpus_per_worker: 1}
checkpoint: {every_n_epochs: 1, keep: 1}
tracking: {experiment: sweeps}
"""


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def tune_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Outcome]:
    """`resnetctl tune ARGS` in-process, in an empty working directory."""
    monkeypatch.chdir(tmp_path)
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(tune_command)
    runner = CliRunner()

    def invoke(*args: str) -> Outcome:
        result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return invoke


@dataclass
class Sweep:
    """A `tune` process whose output goes to files (a chatty Ray can never fill a pipe)."""

    process: subprocess.Popen[str]
    stdout: Path
    stderr: Path

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        self.process.wait(timeout=timeout)
        return self.process.returncode, self.stdout.read_text(), self.stderr.read_text()


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with the tiny base spec; module-scoped so that one sweep is shared
    by several tests."""
    folder = tmp_path_factory.mktemp("sweep")
    (folder / "base.yaml").write_text(TINY_BASE)
    return folder


def start_sweep(workdir: Path, *args: str, tag: str, env: dict[str, str] | None = None) -> Sweep:
    """Start `python -m resnetctl tune ARGS` in `workdir`, in a new session (`env` added to
    this process's environment)."""
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "RAY_DEDUP_LOGS": "0",
        "RESNETCTL_STORAGE": str(workdir / "runs"),
        "RESNETCTL_CACHE": str(workdir.parent / "cache"),
        **(env or {}),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    out, err = workdir / f"stdout-{tag}.txt", workdir / f"stderr-{tag}.txt"
    with out.open("w") as out_file, err.open("w") as err_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "resnetctl", "tune", *args],
            cwd=workdir,
            env=env,
            stdout=out_file,
            stderr=err_file,
            text=True,
            start_new_session=True,
        )
    return Sweep(process, out, err)


@pytest.fixture(scope="module")
def processes() -> Iterator[list[Sweep]]:
    """Every sweep a module starts; all are killed at the end, also when a test failed."""
    started: list[Sweep] = []
    yield started
    for sweep in started:
        kill_group(sweep.process)


def trial_states(experiment: Path) -> dict[str, str]:
    """Trial id -> status in Tune's latest experiment-state snapshot."""
    files = sorted(glob.glob(str(experiment / "experiment_state-*.json")))
    if not files:
        return {}
    try:
        data = json.loads(Path(files[-1]).read_text())
    except (OSError, ValueError):  # caught mid-write
        return {}
    states = {}
    for trial_json, _ in data.get("trial_data", []):
        trial = json.loads(trial_json)
        states[trial["trial_id"]] = trial["status"]
    return states


def sweep_runs(workdir: Path, experiment: str = "sweeps") -> list:
    client = mlflow_client(workdir)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000) if found else []
