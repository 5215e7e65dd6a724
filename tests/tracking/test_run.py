"""The driver's MLflow run handle: what logging a model leaves behind in the process."""

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
