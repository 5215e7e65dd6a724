"""The alias rule of the Model Registry (`best` moves only to a strictly better version) and
registering versions in a real sqlite store."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from mlflow import MlflowClient

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
        (5.0, math.nan, "min", True),  # nor keeps it against a scored one
    ],
)
def test_the_alias_moves_only_to_a_strictly_better_version(
    new: float, current: float | None, mode: str, moved: bool
) -> None:
    assert should_move_alias(new, current, mode) is moved


def test_versions_are_registered_and_the_alias_follows_the_best(
    tmp_path: Path, mlflow_template: Path
) -> None:
    uri = copy_store(mlflow_template, tmp_path)
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    runs = [client.create_run(experiment).info.run_id for _ in range(4)]

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
    by_hand = client.create_run(experiment).info.run_id
    for step, value in ((1, 30.0), (2, 10.0), (3, 15.0)):
        client.log_metric(by_hand, "val_top1_error", value, step=step)
    client.create_registered_model("tiny")
    client.create_model_version("tiny", (tmp_path / "m").as_uri(), run_id=by_hand)
    client.set_registered_model_alias("tiny", ALIAS, "1")
    new = client.create_run(experiment).info.run_id
    kwargs = {"model_id": None, "metric": "val_top1_error", "mode": "min", "epoch": 1}
    worse = register_best(
        client, "tiny", (tmp_path / "a").as_uri(), run_id=new, value=12.0, **kwargs
    )
    assert (worse.alias_moved, worse.aliased_version) == (False, "1")
    better = register_best(
        client, "tiny", (tmp_path / "b").as_uri(), run_id=new, value=9.0, **kwargs
    )
    assert (better.alias_moved, better.aliased_version) == (True, "3")


def test_the_registered_model_name_is_checked_by_the_spec() -> None:
    from pydantic import ValidationError

    from resnetctl.spec.tracking import TrackingSpec

    assert TrackingSpec().registered_model is None  # the job name, at registration
    assert TrackingSpec(registered_model="resnet-50.v2").registered_model == "resnet-50.v2"
    with pytest.raises(ValidationError, match="registered_model"):
        TrackingSpec(registered_model="team/resnet")  # "/" would split a models:/ URI
