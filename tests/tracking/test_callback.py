"""The controller's epoch callback: metrics into MLflow once per epoch, and an epoch event for
the driver's progress view every time an epoch is reported."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from resnetctl.launch.progress import EPOCH_EVENT, WORKER_ERROR_EVENT
from resnetctl.tracking.callback import EpochMetricsCallback


class FakeQueue:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def put(self, item: dict, timeout: float | None = None) -> None:
        self.items.append(item)


def _report(epoch: int, rank: int) -> dict:
    return {
        "epoch": epoch,
        "train_top1_error": 30.0 + rank,
        "val_top1_error": 20.0,
        "images_per_second": 500.0,
        "param_checksum": 1.5,
        "node_id": "n",
    }


def test_every_reported_epoch_is_announced_and_logged_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    queue = FakeQueue()
    callback = EpochMetricsCallback(uri, run_id, progress=queue)
    for epoch in (1, 2, 2):  # epoch 2 again: trained again after a restore
        callback.after_report(None, [_report(epoch, 0), _report(epoch, 1)], None)
    assert [(e["kind"], e["epoch"]) for e in queue.items] == [
        (EPOCH_EVENT, 1),
        (EPOCH_EVENT, 2),
        (EPOCH_EVENT, 2),
    ]
    # Rank 0's metrics, the ones MLflow gets.
    assert queue.items[0]["train_top1_error"] == 30.0 and queue.items[0]["val_top1_error"] == 20.0
    # ... under their MLflow names, with the unit, and the accuracy beside the error.
    history = client.get_metric_history(run_id, "val_top1_error_pct")
    assert sorted(m.step for m in history) == [1, 2]
    logged = client.get_run(run_id).data.metrics
    assert logged["train_top1_error_pct"] == 30.0 and logged["val_top1_acc_pct"] == 80.0
    assert "val_top1_error" not in logged and logged["images_per_second"] == 500.0

    # A queue whose actor is gone (the driver went away) does not stop the metrics.
    class Gone:
        def put(self, item: dict, timeout: float | None = None) -> None:
            raise RuntimeError("actor died")

    EpochMetricsCallback(uri, run_id, progress=Gone()).after_report(None, [_report(3, 0)], None)
    history = client.get_metric_history(run_id, "val_top1_error_pct")
    assert sorted(m.step for m in history) == [1, 2, 3]


def test_failed_workers_are_announced_with_the_innermost_error() -> None:
    queue = FakeQueue()
    try:
        try:
            raise ValueError("first line\nnon-finite loss at epoch 2")
        except ValueError as cause:
            raise RuntimeError("Ray's wrapper") from cause
    except RuntimeError as wrapped:
        EpochMetricsCallback("sqlite:///unused.db", "r", progress=queue).after_exception(
            None, {1: wrapped, 0: wrapped}
        )
    # Ray Train's wrapper of a worker's exception reads as the worker's traceback.
    traceback = RuntimeError(
        'Traceback (most recent call last):\n  File "loop.py", line 1\n'
        "resnetctl.train.runner.NonFiniteLossError: non-finite validation loss at epoch 2\n"
    )
    EpochMetricsCallback("sqlite:///unused.db", "r", progress=queue).after_exception(
        None, {0: traceback}
    )
    assert queue.items == [
        {
            "kind": WORKER_ERROR_EVENT,
            "ranks": [0, 1],
            "error": "ValueError: non-finite loss at epoch 2",
        },
        {
            "kind": WORKER_ERROR_EVENT,
            "ranks": [0],
            "error": "NonFiniteLossError: non-finite validation loss at epoch 2",
        },
    ]


def test_the_last_epochs_ten_crop_metrics_are_logged_at_that_epoch(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    report = {"epoch": 90, "val_top1_error": 30.0, "val_top1_error_10crop": 28.5}
    EpochMetricsCallback(uri, run_id).after_report(None, [report], None)
    (ten_crop,) = client.get_metric_history(run_id, "val_top1_error_10crop_pct")
    assert (ten_crop.value, ten_crop.step) == (28.5, 90)
    (single,) = client.get_metric_history(run_id, "val_top1_error_pct")
    assert (single.value, single.step) == (30.0, 90)


class FakeClient:
    batches: list[list[Any]] = []

    def __init__(self, uri: str) -> None:
        self.uri = uri

    def log_batch(self, run_id: str, metrics: list[Any], tags: list[Any]) -> None:
        FakeClient.batches.append(metrics)


def test_datasets_of_the_first_report_are_logged_once_with_the_class_count(tmp_path: Path) -> None:
    from resnetctl.tracking.datasets import DATASET_REPORT_KEY

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    facts = {"source": "/data/x/train", "source_type": "local", "digest": "abc", "classes": 4}
    described = {
        "train": {**facts, "name": "x/train", "images": 64},
        "val": {**facts, "name": "x/val", "source": "/data/x/val", "images": 16},
    }
    # Epoch 1 of the first worker group, then again after a restart of the group.
    for epoch in (1, 2):
        report = {**_report(epoch, 0), DATASET_REPORT_KEY: described}
        EpochMetricsCallback(uri, run_id).after_report(None, [report], None)
    run = client.get_run(run_id)
    inputs = {
        i.dataset.name: (i.dataset, {t.key: t.value for t in i.tags})
        for i in run.inputs.dataset_inputs
    }
    assert sorted(inputs) == ["x/train", "x/val"] and len(run.inputs.dataset_inputs) == 2
    train, tags = inputs["x/train"]
    assert tags["mlflow.data.context"] == "training" and train.digest == "abc"
    assert json.loads(train.source) == {"uri": "/data/x/train"}
    assert json.loads(train.profile) == {"num_images": 64, "num_classes": 4}
    assert run.data.params["model.num_classes"] == "4"
