"""The Model Registry side of a finished run: one version of the job's registered model per
run, and the alias `best` on the version that ranks first by the spec's checkpoint metric.

Rules (docs/after-training.md):
- Only versions measured alike compare: the same metric on the same validation data (the digest
  of the run's MLflow dataset input with context `validation`, `tracking.datasets`). A version
  measured otherwise (a smoke run's synthetic images, another data set, another metric), or one
  whose score or data is unknown (an alias set by hand), keeps the alias: the new version is
  registered and reported by its number, not promoted.
- One version per run: a resumed run whose best checkpoint is the one its version holds keeps
  that version; when its best checkpoint changed, a new version replaces the run's old one (the
  old number is deleted, its alias passes to the new one).
- Each decision is written on the version (tag `resnetctl.alias_decision`) and returned, for the
  run's log.

Each version carries the metric, value and data digest it was ranked by as tags, so the next run
compares against the aliased version without reading back that version's run (which may be gone
from the store)."""

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
DATA_TAG = "resnetctl.val_data_digest"
DECISION_TAG = "resnetctl.alias_decision"


def should_move_alias(new: float, current: float | None, mode: str) -> bool:
    """Whether a version scoring `new` takes the alias from one scoring `current` on the same
    data and metric (None: no version holds the alias). Only a strictly better score moves it:
    a tie keeps the version that got there first, and an unknown (NaN) score on either side
    keeps the alias where it is."""
    if not math.isfinite(new):
        return False
    if current is None:
        return True
    if not math.isfinite(current):
        return False
    return new < current if mode == "min" else new > current


@dataclass(frozen=True)
class Score:
    """What a version was measured by: the metric, its value (NaN when unknown) and the
    digest of the validation data (None when unknown)."""

    metric: str | None
    value: float
    digest: str | None

    def unlike(self, other: Score) -> str | None:
        """Why `other` does not compare with this score (None when it does)."""
        if other.metric != self.metric:
            return f"it is ranked by {other.metric or 'an unknown metric'}, not {self.metric}"
        if other.digest is None or self.digest is None:
            return "the validation data of one of them is unknown"
        if other.digest != self.digest:
            return (
                f"it was measured on other validation data (digest {other.digest}, "
                f"this run's {self.digest})"
            )
        if not math.isfinite(other.value):
            return f"its {self.metric} is unknown"
        return None


@dataclass(frozen=True)
class Registration:
    """What registering a run's model did."""

    name: str
    version: str
    alias_moved: bool
    aliased_version: str  # the version `models:/NAME@best` names afterwards
    decision: str = ""  # why the alias moved or stayed, in a sentence

    @property
    def uri(self) -> str:
        """`models:/NAME@best` when this version holds the alias, else `models:/NAME/VERSION`."""
        if self.aliased_version == self.version:
            return f"models:/{self.name}@{ALIAS}"
        return f"models:/{self.name}/{self.version}"


def validation_digest(client: Any, run_id: str | None) -> str | None:
    """The digest of the validation data set logged with run `run_id` (None when it logged
    none, or the run is gone)."""
    from mlflow.exceptions import MlflowException
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from resnetctl.tracking.datasets import CONTEXTS

    if not run_id:
        return None
    try:
        inputs = client.get_run(run_id).inputs
    except MlflowException:
        return None
    for item in getattr(inputs, "dataset_inputs", None) or []:
        tags = {tag.key: tag.value for tag in item.tags}
        if tags.get(MLFLOW_DATASET_CONTEXT) == CONTEXTS["val"]:
            return str(item.dataset.digest)
    return None


def version_score(client: Any, version: Any, metric: str, mode: str) -> Score:
    """How `version` was measured: its own tags (written by `register_best`), else its run's:
    the best value of `metric` in the run's history and the run's validation data (a version
    registered by hand, or by an older resnetctl that did not tag the data)."""
    from mlflow.exceptions import MlflowException

    tags = version.tags or {}
    digest = tags.get(DATA_TAG) or validation_digest(client, version.run_id)
    if METRIC_TAG in tags and VALUE_TAG in tags:
        return Score(tags[METRIC_TAG], float(tags[VALUE_TAG]), digest)
    from resnetctl.tracking.names import history

    try:
        # Under the metric's MLflow name, or its old name in a run logged before units.
        logged = history(client, version.run_id, metric) if version.run_id else []
    except MlflowException:
        logged = []
    values = [m.value for m in logged if math.isfinite(m.value)]
    if not values:
        return Score(None, math.nan, digest)
    return Score(metric, min(values) if mode == "min" else max(values), digest)


def aliased_score(client: Any, name: str, metric: str, mode: str) -> tuple[str, Score] | None:
    """(version, score) of the version holding the alias, or None when no version does."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, ALIAS)
    except MlflowException:
        return None
    return str(version.version), version_score(client, version, metric, mode)


def run_version(client: Any, name: str, run_id: str) -> Any:
    """The version of `name` registered for run `run_id` (the newest, should there be more),
    or None."""
    found = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if not found:
        return None
    newest = max(found, key=lambda v: int(v.version))
    # Search results may leave fields out (aliases, the logged model's id): read it whole.
    return client.get_model_version(name, str(newest.version))


def decide(
    new: Score, holder: tuple[str, Score] | None, mode: str, replaces: str | None = None
) -> tuple[bool, str]:
    """(whether the new version takes the alias, why), given the holder's (version, score);
    `replaces` is the run's own previous version, which the new one supersedes."""
    what = f"{new.metric} = {new.value:.4g}"
    if not math.isfinite(new.value):
        return False, f"not promoted: its {new.metric} is unknown"
    if holder is None:
        return True, f"promoted ({what}): no version held the alias"
    number, score = holder
    if number == replaces:
        return True, f"promoted ({what}): this run's version {number} held the alias"
    reason = new.unlike(score)
    if reason is not None:
        return False, f"not promoted: version {number} keeps the alias, {reason}"
    if should_move_alias(new.value, score.value, mode):
        return True, f"promoted ({what}): better than version {number} ({score.value:.4g})"
    return False, f"not promoted ({what}): version {number} scores {score.value:.4g}, as good"


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
    """Register `model_uri` (the run's best checkpoint's network, of `epoch`) as the run's
    version of `name` (created if missing), tagged with what it was measured by, and move the
    alias to it if it beats the aliased version on the same data and metric."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name, description="Best checkpoints of resnetctl runs; alias `best` is the best."
        )
    new = Score(metric, float(value), validation_digest(client, run_id))
    previous = run_version(client, name, run_id)
    holder = aliased_score(client, name, metric, mode)
    if previous is not None and kept_version(previous, metric, value, epoch):
        # Nothing new to hand over (a resumed run whose best checkpoint did not change).
        number = str(previous.version)
        aliased = holder[0] if holder else None
        decision = f"unchanged: version {number} holds this run's epoch {epoch} already"
        return Registration(name, number, False, aliased or number, decision)
    tags = {METRIC_TAG: metric, VALUE_TAG: repr(float(value)), EPOCH_TAG: str(epoch)}
    if new.digest is not None:
        tags[DATA_TAG] = new.digest
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
    number = str(version.version)
    replaces = str(previous.version) if previous is not None else None
    moved, decision = decide(new, holder, mode, replaces)
    if moved:
        client.set_registered_model_alias(name, ALIAS, number)
    aliased = number if moved else (holder[0] if holder else None)
    if replaces is not None and aliased != replaces:
        # One version per run: the run's better checkpoint takes the old version's place.
        client.delete_model_version(name, replaces)
        decision += (
            f"; this run's version {replaces} (epoch {previous.tags.get(EPOCH_TAG)}) is replaced "
            "and deleted"
        )
    client.set_model_version_tag(name, number, DECISION_TAG, decision)
    log.info("%s version %s: %s", name, number, decision)
    return Registration(name, number, moved, aliased or number, decision)


def kept_version(version: Any, metric: str, value: float, epoch: int) -> bool:
    """Whether the run's registered `version` already holds the checkpoint of `epoch` scoring
    `value` by `metric`."""
    tags = version.tags or {}
    try:
        same_value = float(tags.get(VALUE_TAG, "nan")) == float(value)
    except ValueError:
        same_value = False
    return tags.get(METRIC_TAG) == metric and tags.get(EPOCH_TAG) == str(epoch) and same_value
