"""Metric names with their unit, and runs logged before the convention still read."""

from __future__ import annotations

from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric

from resnetctl.spec.metrics import LOGGED_METRICS
from resnetctl.tracking.names import LEGACY_ALIASES, history, mlflow_name, to_mlflow
from tests.analysis.conftest import copy_store


def test_percentages_carry_their_unit_and_nothing_else_is_renamed() -> None:
    assert mlflow_name("val_top1_error") == "val_top1_error_pct"
    assert mlflow_name("val_top5_error_10crop") == "val_top5_error_10crop_pct"
    assert mlflow_name("val_top1_error_pct") == "val_top1_error_pct"  # once only
    assert mlflow_name("eval_top1_error_ten_crop") == "eval_top1_error_ten_crop_pct"
    unchanged = {"val_loss", "lr", "epoch_seconds", "images_per_second", "final_eval_epoch"}
    assert {mlflow_name(name) for name in unchanged} == unchanged
    # Every renamed metric has its old name, and only those.
    assert {LEGACY_ALIASES[mlflow_name(m)] for m in LOGGED_METRICS if "error" in m} == {
        m for m in LOGGED_METRICS if "error" in m
    }
    assert all(new.endswith("_pct") for new in LEGACY_ALIASES)


def test_logged_metrics_get_their_names_and_the_accuracy() -> None:
    report = {"val_top1_error": 12.5, "val_loss": 0.4, "epoch": 3, "node_id": "n"}
    logged = to_mlflow(report, LOGGED_METRICS)
    assert logged == {"val_top1_error_pct": 12.5, "val_loss": 0.4, "val_top1_acc_pct": 87.5}


def _run_with(
    template: Path, folder: Path, names: dict[str, list[float]]
) -> tuple[MlflowClient, str]:
    client = MlflowClient(copy_store(template, folder))
    run_id = client.create_run(client.create_experiment("e")).info.run_id
    metrics = [
        Metric(key, value, 0, step)
        for key, values in names.items()
        for step, value in enumerate(values, start=1)
    ]
    client.log_batch(run_id, metrics=metrics)
    return client, run_id


def test_a_run_logged_with_the_old_names_is_still_read(
    tmp_path: Path, mlflow_template: Path
) -> None:
    # As resnetctl logged runs before units were in the names.
    client, old = _run_with(
        mlflow_template,
        tmp_path,
        {"train_top1_error": [40.0, 20.0], "val_top1_error": [50.0, 30.0]},
    )
    for name in ("val_top1_error", "val_top1_error_pct"):  # an internal or a new name
        assert [m.value for m in history(client, old, name)] == [50.0, 30.0]
    # ... by the readers that compare runs: `reproduce`'s curves and the registry's ranking.
    from resnetctl.reproduce.results import metric_curves
    from resnetctl.tracking.registry import aliased_score

    curves = metric_curves(client.tracking_uri, old)
    assert curves["train_top1_error"] == [(1, 40.0), (2, 20.0)]
    assert curves["val_top1_error"] == [(1, 50.0), (2, 30.0)]

    class Version:
        version, run_id, tags = "1", old, {}

    class Registry:
        def get_model_version_by_alias(self, name: str, alias: str) -> Version:
            return Version()

        def get_metric_history(self, run_id: str, key: str) -> list:
            return client.get_metric_history(run_id, key)

        def get_run(self, run_id: str) -> object:
            return client.get_run(run_id)

    version, score = aliased_score(Registry(), "m", "val_top1_error", "min")
    assert (version, score.metric, score.value) == ("1", "val_top1_error", 30.0)
    # A new run is read under its new names; a run with neither gives nothing.
    client2, new = _run_with(mlflow_template, tmp_path / "new", {"val_top1_error_pct": [10.0]})
    assert [m.value for m in history(client2, new, "val_top1_error")] == [10.0]
    assert history(client2, new, "train_top1_error") == []
