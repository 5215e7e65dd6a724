"""How an eval job ends when it does not succeed: a worker's failure (exit 1, with the reason)
and Ctrl-C (exit 130, its Ray gone)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from resnetctl.cli.app import app
from resnetctl.inference.source import load_model
from tests.inference.test_mlflow_model import _started_run
from tests.launch.rays import session_processes
from tests.processes import command_lines, kill_group, wait_for

pytestmark = pytest.mark.slow  # each starts a Ray


def test_a_model_that_refuses_an_image_size_fails_the_job_with_the_reason(
    colour_run: tuple[Path, Path], mlflow_template: Path, tmp_path: Path
) -> None:
    """A model logged as earlier resnetctl versions did (its exported program fixed at the
    crop) cannot take multi-scale's whole images: the worker's error, and what to do instead."""
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    root, checkpoint = colour_run
    uri, run = _started_run(root, mlflow_template, tmp_path)
    network = load_model(str(checkpoint)).model
    example = torch.zeros(2, 3, 16, 16)
    with torch.no_grad():
        signature = infer_signature(example.numpy(), network(example).numpy())
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run.run_id):
            info = mlflow.pytorch.log_model(
                network, name="model", signature=signature, input_example=example.numpy()
            )
    finally:
        mlflow.set_tracking_uri(None)

    for protocol, code in (("center", 0), ("multi_scale", 1)):
        result = CliRunner().invoke(
            app,
            ["eval", info.model_uri, "-p", protocol, "--tracking-uri", uri, "--no-log"],
            env={"COLUMNS": "200"},
        )
        assert result.exit_code == code, result.stderr[-3000:]
    assert "error: multi_scale: " in result.stderr, result.stderr[-3000:]
    assert f"the exported program of models:/{info.model_id} does not take this image size" in (
        result.stderr
    )
    assert "evaluate the run's checkpoint instead" in result.stderr


def test_ctrl_c_stops_the_job_and_its_ray(colour_run: tuple[Path, Path], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (tmp_path / "err.txt").open("w") as err:
        job = subprocess.Popen(
            [sys.executable, "-m", "resnetctl", "eval", str(colour_run[1]), "--workers", "2"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:

        def workers_started() -> bool:
            assert job.poll() is None, (tmp_path / "err.txt").read_text()[-3000:]
            lines = [line for _, line in command_lines(session_processes(job.pid))]
            return sum("EvalWorker" in line for line in lines) == 2

        assert wait_for(workers_started, timeout=120, interval=0.2)
        os.kill(job.pid, signal.SIGINT)  # the driver alone, as a terminal's Ctrl-C reaches it
        assert job.wait(timeout=60) == 130, (tmp_path / "err.txt").read_text()[-3000:]
        assert "interrupted" in (tmp_path / "err.txt").read_text()
        assert wait_for(lambda: not session_processes(job.pid), 20), [
            line for _, line in command_lines(session_processes(job.pid))
        ]
    finally:
        kill_group(job)
