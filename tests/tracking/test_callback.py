"""The controller's epoch callback: metrics into MLflow every time an epoch is reported (an
epoch trained again replaces the discarded one), and an epoch event for the driver's progress
view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from mlflow import MlflowClient

from resnetctl.tracking import names
from resnetctl.tracking.callback import EpochMetricsCallback
from resnetctl.tracking.events import EPOCH_EVENT, WORKER_ERROR_EVENT
from tests.train._helpers import FakeSession


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


def test_every_reported_epoch_is_announced_and_logged(tmp_path: Path) -> None:
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
    # ... under their MLflow names, with the unit, and the accuracy beside the error; epoch 2
    # twice, the second replacing the first for resnetctl's readers.
    history = client.get_metric_history(run_id, "val_top1_error_pct")
    assert sorted(m.step for m in history) == [1, 2, 2]
    assert [m.step for m in names.history(client, run_id, "val_top1_error")] == [1, 2]
    logged = client.get_run(run_id).data.metrics
    assert logged["train_top1_error_pct"] == 30.0 and logged["val_top1_acc_pct"] == 80.0
    assert "val_top1_error" not in logged and logged["images_per_second"] == 500.0

    # A queue whose actor is gone (the driver went away) does not stop the metrics.
    class Gone:
        def put(self, item: dict, timeout: float | None = None) -> None:
            raise RuntimeError("actor died")

    EpochMetricsCallback(uri, run_id, progress=Gone()).after_report(None, [_report(3, 0)], None)
    history = names.history(client, run_id, "val_top1_error_pct")
    assert [m.step for m in history] == [1, 2, 3]


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


class WorkerLost(RuntimeError):
    """A worker died after reporting an epoch: the run goes back to its last checkpoint."""


class ReportingSession(FakeSession):
    """The loop's session, with every report handed to the controller's callback as Ray Train
    hands it (after each report), and a worker lost after epoch `fail_after`."""

    def __init__(
        self,
        storage: Path,
        callback: EpochMetricsCallback,
        resume_from: Path | None = None,
        fail_after: int | None = None,
    ) -> None:
        super().__init__(storage, resume_from)
        self.callback, self.fail_after = callback, fail_after

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        super().report(metrics, checkpoint_dir, name)
        self.callback.after_report(None, [dict(metrics)], None)
        if self.fail_after is not None and metrics.get("epoch") == self.fail_after:
            raise WorkerLost(f"after epoch {self.fail_after}")


def test_epochs_trained_again_after_a_restore_replace_the_discarded_ones(
    sqlite_store: str, tmp_path: Path
) -> None:
    from resnetctl.tracking.names import history
    from resnetctl.tracking.run import JobRun
    from resnetctl.train.loop import run_training
    from resnetctl.train.runner import Placement, Runner
    from tests.train._helpers import batches, job_spec, tiny_model

    client = MlflowClient(sqlite_store)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    callback = EpochMetricsCallback(sqlite_store, run_id)

    def attempt(session: ReportingSession, base_lr: float) -> None:
        spec = job_spec(train={"epochs": 4, "base_lr": base_lr}, checkpoint={"every_n_epochs": 2})
        torch.manual_seed(0)
        runner = Runner(spec, model=tiny_model(), train_loader=batches(3), val_loader=batches(2))
        run_training(spec, Placement(), session, runner=runner)

    # Epochs 1 to 3, checkpointed after epoch 2; a worker is lost after epoch 3 was logged.
    first = ReportingSession(tmp_path / "first", callback, fail_after=3)
    (tmp_path / "first").mkdir()
    with pytest.raises(WorkerLost):
        attempt(first, base_lr=0.5)
    # The run continues from epoch 2's checkpoint and trains epoch 3 again. Its numbers differ
    # from the discarded epoch 3's (here by a lower rate, as after `--resume --set`; on GPUs a
    # replay is not bit-identical either).
    second = ReportingSession(tmp_path / "second", callback, resume_from=first.checkpoints[0])
    (tmp_path / "second").mkdir()
    attempt(second, base_lr=0.05)

    # Epoch reports only (a restore is reported too, without an epoch).
    firsts = [m for m, _, _ in first.reports if "val_loss" in m]
    seconds = [m for m, _, _ in second.reports if "val_loss" in m]
    reported = {int(m["epoch"]): m["val_loss"] for m in firsts}
    reported.update({int(m["epoch"]): m["val_loss"] for m in seconds})
    discarded = firsts[-1]["val_loss"]
    assert [int(m["epoch"]) for m in seconds] == [3, 4]
    assert reported[3] != discarded
    # What MLflow shows for each epoch: the numbers of the weights the run went on with.
    shown = [(m.step, m.value) for m in history(client, run_id, "val_loss")]
    assert shown == sorted(reported.items()), (shown, discarded)
    assert client.get_run(run_id).data.metrics["val_loss"] == reported[4]
    # The replaced value is kept by MLflow, at the same step, with an earlier timestamp.
    raw = [m for m in client.get_metric_history(run_id, "val_loss") if m.step == 3]
    assert sorted(m.value for m in raw) == sorted([discarded, reported[3]])
    assert max(raw, key=lambda m: m.timestamp).value == reported[3]
    assert JobRun(sqlite_store, run_id).logged_epochs() == {1, 2, 3, 4}


def test_a_restore_with_another_number_of_workers_is_tagged_as_a_resize(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    queue = FakeQueue()
    callback = EpochMetricsCallback(uri, run_id, progress=queue)

    def restore(step: int, workers: int) -> list[dict[str, Any]]:
        report = {"restored_step": step, "workers": workers, "global_batch": 64, "peak_lr": 0.1}
        return [dict(report) for _ in range(workers)]  # every rank reports

    callback.after_report(None, [_report(1, 0), _report(1, 1)], None)  # two workers
    callback.after_report(None, restore(30, 1), None)  # a node lost: one left
    callback.after_report(None, [_report(2, 0)], None)
    callback.after_report(None, restore(50, 1), None)  # a restart at the same size
    callback.after_report(None, restore(70, 2), None)  # grown back to two
    run = client.get_run(run_id).data
    assert run.tags["resnetctl.resize.1"] == (
        "step 30: 2 -> 1 workers (64 images per step, peak lr 0.1)"
    )
    assert run.tags["resnetctl.resize.2"].startswith("step 70: 1 -> 2 workers")
    assert "resnetctl.resize.3" not in run.tags
    assert run.metrics["resizes"] == 2 and run.metrics["restarts"] == 3
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "resizes")] == [
        (30, 1.0),
        (70, 2.0),
    ]
    notes = [e["line"] for e in queue.items if "line" in e and e["line"].startswith("resized")]
    assert notes == [
        "resized: " + run.tags["resnetctl.resize.1"],
        "resized: " + run.tags["resnetctl.resize.2"],
    ]
