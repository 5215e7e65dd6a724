"""`resnetctl ui`: the light MLflow server, opened at the experiment of the last run."""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient

from resnetctl.cli.ui import last_experiment, ui_url
from tests.analysis.conftest import copy_store
from tests.launch.conftest import Processes, free_port, wait_for
from tests.processes import command_lines


def _two_experiments(mlflow_template: Path, tmp_path: Path) -> tuple[str, str]:
    """A store whose last run is in the second of two experiments: (URI, that experiment)."""
    uri = copy_store(mlflow_template, tmp_path / "store")
    client = MlflowClient(uri)
    first = client.create_experiment("first", artifact_location=(tmp_path / "a").as_uri())
    second = client.create_experiment("second", artifact_location=(tmp_path / "b").as_uri())
    client.create_run(second, start_time=2_000)
    client.create_run(first, start_time=1_000)  # created later, started earlier
    return uri, second


def test_the_ui_opens_at_the_experiment_of_the_last_started_run(
    mlflow_template: Path, tmp_path: Path
) -> None:
    uri, second = _two_experiments(mlflow_template, tmp_path)
    assert last_experiment(uri) == (second, False)
    view = "?workflowType=machine_learning"  # the UI's "Model training" view, not GenAI
    assert ui_url(5001, (second, False)) == f"http://127.0.0.1:5001/#/experiments/{second}{view}"
    assert ui_url(5001, None) == f"http://127.0.0.1:5001/#/{view}"
    empty = copy_store(mlflow_template, tmp_path / "empty")
    assert ui_url(5001, last_experiment(empty)) == f"http://127.0.0.1:5001/#/{view}"


@pytest.mark.slow
def test_resnetctl_ui_serves_the_review_without_mlflows_job_runner(
    mlflow_template: Path, tmp_path: Path
) -> None:
    import psutil

    uri, second = _two_experiments(mlflow_template, tmp_path)
    port = free_port()
    processes = Processes(tmp_path)
    processes.start(
        "ui", [sys.executable, "-m", "resnetctl", "ui", "--port", str(port), "--uri", uri]
    )
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "ui.log"

    def answers(path: str) -> bool:
        try:
            with urllib.request.urlopen(base + path, timeout=5) as response:  # noqa: S310
                return response.status == 200 and isinstance(json.loads(response.read()), dict)
        except OSError:
            return False

    try:
        assert wait_for(lambda: answers("/api/2.0/mlflow/experiments/search?max_results=5"), 120)
        assert f"{base}/#/experiments/{second}?workflowType=machine_learning" in (
            log.read_text().splitlines()
        )
        assert answers("/api/2.0/mlflow/registered-models/search")  # the Model Registry
        # The web server alone: no job runner (huey consumers) beside it.
        tree = psutil.Process(processes.started[0].pid).children(recursive=True)
        commands = [line for _, line in command_lines(tree)]
        assert not [c for c in commands if "huey" in c or "job" in c], commands
    finally:
        processes.stop()


def test_an_experiment_of_resnetctl_opens_with_its_runs_table_view(
    mlflow_template: Path, tmp_path: Path
) -> None:
    from resnetctl.tracking.experiment import ensure_experiment

    uri = copy_store(mlflow_template, tmp_path / "store")
    client = MlflowClient(uri)
    experiment = ensure_experiment(client, "jobs", artifact_location=(tmp_path / "a").as_uri())
    client.create_run(experiment)
    assert last_experiment(uri) == (experiment, True)
    assert ui_url(5001, (experiment, True)) == (
        f"http://127.0.0.1:5001/#/experiments/{experiment}/runs"
        "?workflowType=machine_learning&viewStateShareKey=resnetctl"
    )
    # A user's own edit of the view in the UI is kept by later jobs.
    client.set_experiment_tag(experiment, "mlflow.sharedViewState.resnetctl", "{}")
    ensure_experiment(client, "jobs")
    assert client.get_experiment(experiment).tags["mlflow.sharedViewState.resnetctl"] == "{}"


def test_a_taken_port_is_one_line_before_any_server_starts(cli) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        outcome = cli("ui", "--port", str(port), "--json")
    assert outcome.code == 2 and outcome.stdout == ""
    assert f"port {port} on 127.0.0.1 is taken" in outcome.stderr and "--port N" in outcome.stderr
