"""The MLflow experiment runs go into: created on first use, with a description, and marked
as model training so that MLflow's UI opens it in its model-training view, not the GenAI one."""

from __future__ import annotations

from typing import Any

#: The experiment tag MLflow's UI (3.x) reads to choose between its GenAI and model-training
#: views; `custom_model_development` is the latter (the UI's ExperimentKind enum).
KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
#: The tag the UI shows and edits as the experiment's description.
DESCRIPTION_TAG = "mlflow.note.content"

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
    for key, value in ((DESCRIPTION_TAG, description), (KIND_TAG, MODEL_TRAINING)):
        if value and not tags.get(key):
            client.set_experiment_tag(experiment_id, key, value)
    return experiment_id
