"""What the client reads from a cluster job's logs once it has ended: the run summary its
driver printed (`submit --json` on the head), and a cluster whose `python` lacks resnetctl's
dependencies, said in one line with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from resnetctl.launch.outcome import RunSummary
from resnetctl.launch.remote import missing_dependency, summary_in
from tests.conftest import ROOT

SUMMARY = RunSummary(
    succeeded=True,
    run_name="quickstart-20261206-101500",
    mlflow_run_id="75d90b5986f74c2898f1190e3eb194df",
    mlflow_url="http://10.0.0.2:5000/#/experiments/1/runs/75d90b5986f74c2898f1190e3eb194df",
    storage_path="s3://team/runs/quickstart-20261206-101500",
    seconds=85.5,
    startup_seconds=30.4,
    epochs_completed=8,
    metrics={"best_val_top1_error_pct": 0.5556, "best_epoch": 6.0, "final_val_top1_acc_pct": 99.17},
)


def test_the_summary_is_found_among_the_drivers_other_output() -> None:
    logs = (
        "quickstart-20261206-101500: Ray and MLflow log to /tmp/x/resnetctl.log\n"
        "epoch 1/8  train error 77.70%  val error 90.00%  209 img/s  8s  58s left\n"
        '{"not": "a summary"}\n'
        + json.dumps(SUMMARY.as_dict(), indent=2)
        + "\n(raylet) a line Ray printed as it stopped {with braces}\n"
    )
    assert summary_in(logs) == SUMMARY.as_dict()
    assert RunSummary.from_dict(summary_in(logs)).headline().startswith("8 epochs, ")


def test_a_job_that_ended_before_training_has_no_summary() -> None:
    logs = "error: data.source.root: no such folder\n{\n  broken"
    assert summary_in(logs) is None


def test_a_missing_module_on_the_cluster_is_one_line_with_the_fix() -> None:
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "<frozen runpy>", line 198, in _run_module_as_main\n'
        "ModuleNotFoundError: No module named 'typer'\n"
    )
    hint = missing_dependency(traceback)
    assert hint is not None and "\n" not in hint
    assert "no module 'typer'" in hint and "head node's PATH" in hint
    assert ". .venv/bin/activate" in hint
    assert missing_dependency("RuntimeError: CUDA out of memory") is None


def test_python_dash_m_resnetctl_without_its_dependencies_prints_one_line() -> None:
    # `-S` leaves out site-packages: a Python that has resnetctl's code but not its libraries,
    # as a Ray head started outside the venv runs a job (`py_modules` ships the code).
    done = subprocess.run(
        [sys.executable, "-S", "-m", "resnetctl", "submit", "job.yaml", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "platform")},
        timeout=60,
    )
    assert done.returncode == 1 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith("resnetctl: error: this Python (") and "no module named" in line
    assert missing_dependency(done.stderr) is not None  # what the client then says
