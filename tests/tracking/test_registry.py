"""The alias rule of the Model Registry (`best` moves only to a strictly better version) and
registering versions in a real sqlite store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

from resnetctl.tracking.datasets import log_datasets
from resnetctl.tracking.registry import (
    ALIAS,
    METRIC_TAG,
    VALUE_TAG,
    register_best,
    should_move_alias,
)
from tests.analysis.conftest import copy_store


@pytest.mark.parametrize(
    ("new", "current", "mode", "moved"),
    [
        (4.0, None, "min", True),  # the first version takes the alias
        (3.0, 4.0, "min", True),  # lower error: better
        (5.0, 4.0, "min", False),  # worse: stays
        (4.0, 4.0, "min", False),  # a tie keeps the earlier version
        (0.9, 0.8, "max", True),  # higher is better for a max metric
        (0.7, 0.8, "max", False),
        (0.8, 0.8, "max", False),
        (math.nan, 4.0, "min", False),  # an unscored version never takes it
        (5.0, math.nan, "min", False),  # a holder of unknown score keeps it: nothing compares
    ],
)
def test_the_alias_moves_only_to_a_strictly_better_version(
    new: float, current: float | None, mode: str, moved: bool
) -> None:
    assert should_move_alias(new, current, mode) is moved


def measured_on(client: MlflowClient, experiment: str, digest: str | None) -> str:
    """A new run whose validation data set (its MLflow dataset input, as the training callback
    logs it) has `digest`; None: a run without datasets."""
    run_id = client.create_run(experiment).info.run_id
    if digest is not None:
        facts = {"source_type": "local", "digest": digest, "images": 16, "classes": 4}
        described = {
            "train": {**facts, "name": "d/train", "source": "/d/train", "digest": "t-" + digest},
            "val": {**facts, "name": "d/val", "source": "/d/val"},
        }
        log_datasets(client, run_id, described)
    return run_id


def test_versions_are_registered_and_the_alias_follows_the_best(
    tmp_path: Path, mlflow_template: Path
) -> None:
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    runs = [measured_on(client, experiment, "same-val") for _ in range(4)]

    def register(run_id: str, value: float) -> tuple[str, bool, str]:
        done = register_best(
            client,
            "tiny",
            (tmp_path / run_id).as_uri(),
            model_id=None,
            run_id=run_id,
            metric="val_top1_error",
            mode="min",
            value=value,
            epoch=3,
            run_name=f"tiny-{run_id[:4]}",
        )
        return done.version, done.alias_moved, done.aliased_version

    assert register(runs[0], 20.0) == ("1", True, "1")
    assert register(runs[1], 25.0) == ("2", False, "1")
    assert register(runs[2], 20.0) == ("3", False, "1")
    assert register(runs[3], 12.5) == ("4", True, "4")
    best = client.get_model_version_by_alias("tiny", ALIAS)
    assert str(best.version) == "4" and best.run_id == runs[3]
    assert best.tags[METRIC_TAG] == "val_top1_error" and float(best.tags[VALUE_TAG]) == 12.5


def test_an_aliased_version_without_tags_is_scored_by_its_runs_metric(
    tmp_path: Path, mlflow_template: Path
) -> None:
    # A version registered by hand: its run's best value of the metric is what a new one beats.
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    by_hand = measured_on(client, experiment, "same-val")
    for step, value in ((1, 30.0), (2, 10.0), (3, 15.0)):
        client.log_metric(by_hand, "val_top1_error", value, step=step)
    client.create_registered_model("tiny")
    client.create_model_version("tiny", (tmp_path / "m").as_uri(), run_id=by_hand)
    client.set_registered_model_alias("tiny", ALIAS, "1")
    new = measured_on(client, experiment, "same-val")
    kwargs = {"model_id": None, "metric": "val_top1_error", "mode": "min", "epoch": 1}
    worse = register_best(
        client, "tiny", (tmp_path / "a").as_uri(), run_id=new, value=12.0, **kwargs
    )
    assert (worse.alias_moved, worse.aliased_version) == (False, "1")
    better = register_best(
        client, "tiny", (tmp_path / "b").as_uri(), run_id=new, value=9.0, **{**kwargs, "epoch": 2}
    )
    assert (better.alias_moved, better.aliased_version) == (True, "3")


DECISION = "resnetctl.alias_decision"


def _registrar(client: MlflowClient, tmp_path: Path):  # noqa: ANN202 - a test helper
    def register(run_id: str, value: float, epoch: int = 3, metric: str = "val_top1_error"):  # noqa: ANN202
        return register_best(
            client,
            "tiny",
            (tmp_path / f"{run_id}-{epoch}").as_uri(),
            model_id=None,
            run_id=run_id,
            metric=metric,
            mode="min",
            value=value,
            epoch=epoch,
            run_name=f"tiny-{run_id[:4]}",
        )

    return register


def _decision(client: MlflowClient, version: str) -> str:
    return client.get_model_version("tiny", version).tags.get(DECISION, "")


def test_best_compares_only_versions_measured_on_the_same_validation_data_and_metric(
    tmp_path: Path, mlflow_template: Path
) -> None:
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    register = _registrar(client, tmp_path)
    first = register(measured_on(client, experiment, "imagenet-val"), 20.0)
    assert (first.version, first.alias_moved) == ("1", True)
    # A smoke run (synthetic images) under the same name: 5 % error on other data is no win.
    smoke = register(measured_on(client, experiment, "synthetic-val"), 5.0)
    assert (smoke.version, smoke.alias_moved, smoke.aliased_version) == ("2", False, "1")
    assert "other validation data" in _decision(client, "2"), _decision(client, "2")
    # Nor is a version ranked by another metric, nor one whose data nobody recorded.
    top5 = register(measured_on(client, experiment, "imagenet-val"), 1.0, metric="val_top5_error")
    assert (top5.alias_moved, top5.aliased_version) == (False, "1")
    assert "val_top5_error" in _decision(client, top5.version)
    unknown = register(measured_on(client, experiment, None), 2.0)
    assert (unknown.alias_moved, unknown.aliased_version) == (False, "1")
    # A better version on the same data takes it, and says against what.
    better = register(measured_on(client, experiment, "imagenet-val"), 12.5)
    assert (better.alias_moved, better.aliased_version) == (True, better.version)
    assert "version 1" in _decision(client, better.version)
    best = client.get_model_version_by_alias("tiny", ALIAS)
    assert str(best.version) == better.version
    assert best.tags["resnetctl.val_data_digest"] == "imagenet-val"


def test_a_version_of_unknown_score_keeps_the_alias_and_the_new_one_is_reported(
    tmp_path: Path, mlflow_template: Path
) -> None:
    # Set by hand on a version whose run logged neither the metric nor its data.
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    by_hand = client.create_run(experiment).info.run_id
    client.create_registered_model("tiny")
    client.create_model_version("tiny", (tmp_path / "m").as_uri(), run_id=by_hand)
    client.set_registered_model_alias("tiny", ALIAS, "1")
    new = _registrar(client, tmp_path)(measured_on(client, experiment, "val"), 9.0)
    assert (new.version, new.alias_moved, new.aliased_version) == ("2", False, "1")
    assert new.uri == "models:/tiny/2"  # reported as itself, not as the alias
    assert "unknown" in _decision(client, "2"), _decision(client, "2")
    assert str(client.get_model_version_by_alias("tiny", ALIAS).version) == "1"


def test_a_resumed_run_keeps_one_version(tmp_path: Path, mlflow_template: Path) -> None:
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    register = _registrar(client, tmp_path)
    run = measured_on(client, experiment, "val")
    other = register(measured_on(client, experiment, "val"), 25.0)
    assert (other.version, other.alias_moved) == ("1", True)
    first = register(run, 20.0, epoch=3)
    assert (first.version, first.alias_moved) == ("2", True)

    def versions_of(run_id: str) -> list[str]:
        found = client.search_model_versions(f"name = 'tiny' and run_id = '{run_id}'")
        return sorted(str(v.version) for v in found)

    # `--resume` of the finished run: nothing new was trained, its best is the same checkpoint.
    again = register(run, 20.0, epoch=3)
    assert (again.version, again.aliased_version) == ("2", "2")
    assert versions_of(run) == ["2"]
    # `--resume --set train.epochs=...`: a better epoch replaces the run's version.
    longer = register(run, 15.0, epoch=5)
    assert versions_of(run) == [longer.version] and longer.aliased_version == longer.version
    assert str(client.get_model_version_by_alias("tiny", ALIAS).version) == longer.version
    assert "replaced and deleted" in _decision(client, longer.version)
    assert versions_of(other_run := client.get_model_version("tiny", "1").run_id) == ["1"]
    assert other_run != run


def test_the_registered_model_name_is_checked_by_the_spec() -> None:
    from pydantic import ValidationError

    from resnetctl.spec.tracking import TrackingSpec

    assert TrackingSpec().registered_model is None  # the job name, at registration
    assert TrackingSpec(registered_model="resnet-50.v2").registered_model == "resnet-50.v2"
    with pytest.raises(ValidationError, match="registered_model"):
        TrackingSpec(registered_model="team/resnet")  # "/" would split a models:/ URI
