"""Find the MLflow run of a job by its run name, quickly or not at all."""

from __future__ import annotations

import os


def run_for_job(uri: str, run_name: str, timeout_s: int = 5) -> str | None:
    """The id of the run tagged `resnetctl.run_name = run_name` in the store `uri`, or None when
    there is none or the store does not answer within the timeout (listings must not hang)."""
    if not uri:
        return None
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(timeout_s))
    try:
        from mlflow import MlflowClient

        runs = MlflowClient(uri).search_runs(
            experiment_ids=[e.experiment_id for e in MlflowClient(uri).search_experiments()],
            filter_string=f"tags.`resnetctl.run_name` = '{run_name}'",
            max_results=1,
        )
    except Exception:
        return None
    return runs[0].info.run_id if runs else None
