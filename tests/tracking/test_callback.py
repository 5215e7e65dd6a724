"""The controller's MLflow callback logs the final 10-crop evaluation as its own metrics."""

from __future__ import annotations

from typing import Any

import mlflow
import pytest

from resnetctl.tracking.callback import EpochMetricsCallback


class FakeClient:
    batches: list[list[Any]] = []

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def log_batch(self, run_id: str, metrics: list[Any], tags: list[Any]) -> None:
        FakeClient.batches.append(metrics)


def test_the_last_epochs_ten_crop_metrics_are_logged_at_that_epoch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(mlflow, "MlflowClient", FakeClient)
    FakeClient.batches = []
    callback = EpochMetricsCallback("file:///nowhere", "run")
    report = {"epoch": 90, "val_top1_error": 30.0, "val_top1_error_10crop": 28.5}
    callback.after_report(None, [report], None)
    logged = {(m.key, m.value, m.step) for m in FakeClient.batches[0]}
    assert ("val_top1_error_10crop", 28.5, 90) in logged
    assert ("val_top1_error", 30.0, 90) in logged


def test_step_reports_are_logged_at_the_global_step_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlflow, "MlflowClient", FakeClient)
    FakeClient.batches = []
    callback = EpochMetricsCallback("file:///nowhere", "run")
    report = {"global_step": 200, "step_train_loss": 2.5, "step_lr": 0.1, "node_id": "n"}
    callback.after_report(None, [report, dict(report)], None)
    callback.after_report(None, [report], None)  # replayed after a restore
    (logged,) = FakeClient.batches
    assert {(m.key, m.value, m.step) for m in logged} == {
        ("step_train_loss", 2.5, 200),
        ("step_lr", 0.1, 200),
    }
    # A step report is not an epoch: epoch 200 stays unlogged.
    assert callback.logged == set()
