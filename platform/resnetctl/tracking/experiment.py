"""The MLflow experiment runs go into: created on first use, with a description, marked as
model training so that MLflow's UI opens it in its model-training view, not the GenAI one, and
with a runs-table view whose columns show what each run trained and how well."""

from __future__ import annotations

import json
import time
from typing import Any

from resnetctl.tracking.labels import VISIBLE_TAGS
from resnetctl.tracking.summary import BEST_EPOCH, FINAL_ACCURACY, best_name

#: The experiment tag MLflow's UI (3.x) reads to choose between its GenAI and model-training
#: views; `custom_model_development` is the latter (the UI's ExperimentKind enum).
KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
#: The tag the UI shows and edits as the experiment's description.
DESCRIPTION_TAG = "mlflow.note.content"

#: MLflow's UI keeps saved views of the runs table (columns, sort) in experiment tags
#: `mlflow.sharedViewState.<id>`, lists them under "Views" and opens one when the URL says
#: `viewStateShareKey=<id>`: how `resnetctl ui` shows the tags and headline metrics as columns
#: without a click. (MLflow 3.17's format: an envelope of name, creation time in ms and the
#: state, plain JSON being accepted beside its own deflated text.)
VIEW_KEY = "resnetctl"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "resnetctl: what each run trained, and how well"


def _column(kind: str, key: str) -> str:
    # The UI's canonical column key (makeCanonicalSortKey in MLflow's experiment page).
    return f"{kind}.`{key}`"


def runs_table_view() -> dict[str, Any]:
    """The runs table a reviewer sees first: the headline metrics, then the tags that say what
    each run trained; nine columns beside the run's name, start and duration fit a 1600-pixel
    window (the source, data sets and logged model are on the run's page)."""
    metrics = [best_name("val_top1_error"), BEST_EPOCH, FINAL_ACCURACY]
    return {
        "selectedColumns": [
            *(_column("metrics", key) for key in metrics),
            *(_column("tags", key) for key in VISIBLE_TAGS),
        ],
        "orderByKey": "attributes.start_time",
        "orderByAsc": False,
    }


def saved_view(created_ms: int) -> str:
    """The tag value of resnetctl's saved view, as MLflow's UI reads it."""
    state = json.dumps(runs_table_view())
    return json.dumps({"name": VIEW_NAME, "createdAt": created_ms, "state": state})


DEFAULT_DESCRIPTION = (
    "ResNet training runs of resnetctl: one run per job, named by its resnetctl run name; "
    "errors and accuracies in percent (`*_pct`), the best checkpoint as the logged model."
)


def ensure_experiment(
    client: Any,
    name: str,
    description: str = DEFAULT_DESCRIPTION,
    *,
    artifact_location: str | None = None,
) -> str:
    """The id of experiment `name`, created (with `artifact_location`) if missing. Its
    description and kind are set when it has none, never overwritten: a user's edit in the UI
    stays."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException:  # created meanwhile by a concurrent job (sweep trials)
            pass
        experiment = client.get_experiment_by_name(name)
    experiment_id, tags = experiment.experiment_id, dict(experiment.tags or {})
    defaults = (
        (DESCRIPTION_TAG, description),
        (KIND_TAG, MODEL_TRAINING),
        (VIEW_TAG, saved_view(int(time.time() * 1000))),
    )
    for key, value in defaults:
        if value and not tags.get(key):
            client.set_experiment_tag(experiment_id, key, value)
    return experiment_id
