"""The Model Registry side of a finished run: one new version of the job's registered model per
run, and the alias `best` on the version that ranks first by the spec's checkpoint metric.

Each version carries the metric it was ranked by as tags, so the next run compares against the
aliased version without reading back that version's run (which may be gone from the store)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

ALIAS = "best"
METRIC_TAG = "resnetctl.ranking_metric"
VALUE_TAG = "resnetctl.ranking_value"
EPOCH_TAG = "resnetctl.epoch"
RUN_NAME_TAG = "resnetctl.run_name"


def should_move_alias(new: float, current: float | None, mode: str) -> bool:
    """Whether a version scoring `new` takes the alias from one scoring `current`
    (None: no version holds the alias yet, or its score is unknown). Only a strictly better
    score moves it: a tie keeps the version that got there first."""
    if not math.isfinite(new):
        return False
    if current is None or not math.isfinite(current):
        return True
    return new < current if mode == "min" else new > current


@dataclass(frozen=True)
class Registration:
    """What registering a run's model did."""

    name: str
    version: str
    alias_moved: bool
    aliased_version: str  # the version `models:/NAME@best` names afterwards

    @property
    def uri(self) -> str:
        """`models:/NAME@best`."""
        return f"models:/{self.name}@{ALIAS}"


def aliased_score(client: Any, name: str, metric: str, mode: str) -> tuple[str, float] | None:
    """(version, score) of the version holding the alias, or None when no version does.

    The score is the version's own tag when it was ranked by `metric`, else the best value of
    `metric` in the version's run (a version registered by hand or by another spec); NaN when
    neither is known, which lets any scored version take the alias."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None
    tags = version.tags or {}
    if tags.get(METRIC_TAG) == metric and VALUE_TAG in tags:
        return version.version, float(tags[VALUE_TAG])
    from resnetctl.tracking.names import history

    try:
        # Under the metric's MLflow name, or its old name in a run logged before units.
        logged = history(client, version.run_id, metric) if version.run_id else []
    except MlflowException:
        logged = []
    values = [m.value for m in logged if math.isfinite(m.value)]
    if not values:
        return version.version, math.nan
    return version.version, (min(values) if mode == "min" else max(values))


def register_best(
    client: Any,
    name: str,
    model_uri: str,
    *,
    model_id: str | None,
    run_id: str,
    metric: str,
    mode: str,
    value: float,
    epoch: int,
    run_name: str | None = None,
) -> Registration:
    """Register `model_uri` as a new version of `name` (created if missing), tagged with the
    metric it ranks by, and move the alias to it if it beats the aliased version."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Best checkpoints of resnetctl runs; alias `best` is the best."
        )
    tags = {METRIC_TAG: metric, VALUE_TAG: repr(float(value)), EPOCH_TAG: str(epoch)}
    if run_name:
        tags[RUN_NAME_TAG] = run_name
    source = model_uri
    if model_id is not None and model_uri.startswith("models:/"):
        # MLflow's registry store resolves a `models:/<id>` source through the process's global
        # tracking URI, not this client's (a TODO in its sqlalchemy store): hand it the logged
        # model's own location, and the id to link the version to it.
        source = client.get_logged_model(model_id).artifact_location
    version = client.create_model_version(
        name,
        source,
        run_id=run_id,
        tags=tags,
        description=f"{run_name or run_id}: epoch {epoch}, {metric} = {value:.4g}",
        model_id=model_id,
    )
    current = aliased_score(client, name, metric, mode)
    moved = should_move_alias(value, current[1] if current else None, mode)
    if moved:
        client.set_registered_model_alias(name, ALIAS, version.version)
    aliased = version.version if moved else (current[0] if current else version.version)
    return Registration(name, str(version.version), moved, str(aliased))
