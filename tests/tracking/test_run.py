"""The driver's MLflow run handle: preparing the store, environment tags, and what logging a
model leaves behind in the process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mlflow import MlflowClient

from resnetctl.models import create_model
from resnetctl.tracking.run import JobRun


def test_log_model_does_not_leak_its_store_into_the_next_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI; a second job in this process would
    # then log into the first job's store instead of its own default.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    model_uri = JobRun(uri, run_id).log_model(create_model("cifar_resnet8", num_classes=4), 16)
    assert model_uri.startswith("models:/")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    import mlflow

    assert mlflow.get_tracking_uri() != uri


def test_prepare_store_creates_a_new_sqlite_store_that_jobs_then_use(tmp_path: Path) -> None:
    import sqlite3

    from resnetctl.tracking.run import prepare_store

    db = tmp_path / "mlflow.db"
    prepare_store(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"experiments", "runs", "metrics", "params"} <= tables
    client = MlflowClient(f"sqlite:///{db}")
    assert client.get_run(client.create_run("0").info.run_id).info.status == "RUNNING"


def test_environment_tags_are_collected_once_and_handed_out_as_copies() -> None:
    from resnetctl.tracking.run import environment_tags

    first = environment_tags()
    first["torch.version"] = "edited by a caller"
    second = environment_tags()
    assert second["torch.version"] != "edited by a caller"
    assert second["host.cpus"] == str(len(os.sched_getaffinity(0)))
