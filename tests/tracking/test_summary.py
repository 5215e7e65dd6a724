"""The summary metrics a finished run gets: best value and epoch of the ranking metric, final
accuracy, durations and the network's size."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from resnetctl.spec import load_spec
from resnetctl.tracking.summary import best_epoch, summary_metrics
from tests.analysis.conftest import copy_store
from tests.conftest import JOBS


def test_the_best_epoch_is_the_earliest_of_equal_best_values() -> None:
    points = [(1, 30.0), (2, 10.0), (3, math.nan), (4, 10.0), (5, 20.0)]
    assert best_epoch(points, "min") == (2, 10.0)
    assert best_epoch(points, "max") == (1, 30.0)
    assert best_epoch([(1, math.nan)], "min") is None


def test_summary_of_a_logged_run(tmp_path: Path, mlflow_template: Path) -> None:
    spec = load_spec(JOBS / "quickstart.yaml", overrides=["checkpoint.metric=val_loss"])
    client = MlflowClient(copy_store(mlflow_template, tmp_path))
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    history = {"val_loss": [0.9, 0.3, 0.5], "val_top1_error_pct": [40.0, 8.0, 6.0]}
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, value, 0, step)
            for key, values in history.items()
            for step, value in enumerate(values, start=1)
        ],
    )
    client.log_param(run_id, "model.num_classes", "10")  # as the data set reported it
    summary = summary_metrics(client, run_id, spec, total_seconds=120.0, startup_seconds=30.0)
    assert summary["best_val_loss"] == 0.3 and summary["best_epoch"] == 2
    assert summary["final_val_top1_acc_pct"] == pytest.approx(94.0)  # the last epoch's
    assert (summary["total_seconds"], summary["startup_seconds"]) == (120.0, 30.0)
    from resnetctl.models import count_parameters, create_model

    # ResNet-20 with 10 outputs: Table 6's 0.27M parameters, about 41M multiply-adds at 32x32.
    network = create_model("cifar_resnet20", num_classes=10)
    assert summary["model_parameters"] == count_parameters(network)
    assert 35e6 < summary["model_multiply_adds"] < 45e6


def test_the_runs_table_shows_summary_metrics_a_default_run_gets(
    tmp_path: Path, mlflow_template: Path
) -> None:
    from resnetctl.tracking.experiment import runs_table_view

    spec = load_spec(JOBS / "quickstart.yaml")  # ranked by validation error, as jobs are
    client = MlflowClient(copy_store(mlflow_template, tmp_path))
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    for step, value in enumerate([40.0, 8.0, 9.0], start=1):
        client.log_metric(run_id, "val_top1_error_pct", value, step=step)
    summary = summary_metrics(client, run_id, spec, total_seconds=60.0, startup_seconds=20.0)
    columns = [c for c in runs_table_view()["selectedColumns"] if c.startswith("metrics.")]
    assert len(columns) == 3
    assert {c.removeprefix("metrics.").strip("`") for c in columns} <= set(summary)
    assert summary["best_val_top1_error_pct"] == 8.0
