"""The MLflow tags that tie a sweep's runs together, and the lookup of a trial's child run by
them: written by `resnetctl.tune`, read by `tune`, `reproduce` and `analysis` alike."""

from __future__ import annotations

from typing import Any

#: MLflow's own tag that nests a run under another in the UI.
PARENT_TAG = "mlflow.parentRunId"
#: The sweep a run belongs to (parent and children).
SWEEP_TAG = "resnetctl.tune.sweep"
#: `parent` on a sweep's parent run.
ROLE_TAG = "resnetctl.tune.role"
#: The Tune trial id of a child run: the key of its Ray Train directory `<sweep>/train/<id>`.
TRIAL_TAG = "resnetctl.tune.trial_id"
#: A trial in words (`resnet34-B train.base_lr=0.05`).
LABEL_TAG = "resnetctl.tune.label"
#: `true` on a child run the scheduler stopped before its last epoch.
STOPPED_TAG = "resnetctl.tune.stopped_early"
#: On the parent: the best trial's id, child run id and label.
BEST_TRIAL_TAG = "resnetctl.tune.best_trial"
BEST_RUN_TAG = "resnetctl.tune.best_run_id"
BEST_LABEL_TAG = "resnetctl.tune.best_label"
#: The unique resnetctl name of a run (for a trial: its trial id).
RUN_NAME_TAG = "resnetctl.run_name"
#: The job (spec `name`) a run trains.
JOB_TAG = "resnetctl.job"


def child_runs_filter(parent_run_id: str, trial_id: str | None = None) -> str:
    """MLflow's filter string for the children of a sweep's parent run (or one trial's)."""
    text = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    return text if trial_id is None else f"{text} and tags.`{TRIAL_TAG}` = '{trial_id}'"


def find_child_run(client: Any, experiment: str, parent_run_id: str, trial_id: str) -> Any:
    """The MLflow child run of `trial_id` under the sweep's parent run, or None."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = client.search_runs(
        [found.experiment_id],
        filter_string=child_runs_filter(parent_run_id, trial_id),
        max_results=1,
    )
    return runs[0] if runs else None
