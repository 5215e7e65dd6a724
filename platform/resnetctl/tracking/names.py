"""Metric names in MLflow: the training loop's names with their unit, and the old names readers
still accept.

The training loop, checkpoints (`meta.json`), schedules and Ray Tune keep the internal names
(`val_top1_error`, in percent as in the paper's tables). The unit is added once, when a metric
is logged to MLflow or printed by `--json`: a metric in percent ends in `_pct`
(`val_top1_error_pct`, `val_top1_acc_pct`); durations already end in `_seconds`. The spec's
`checkpoint.metric` and `tune --metric` take the same public names (`spec.metrics`). Runs
logged before this convention used the bare names; `history` reads either, so `analyze`,
`reproduce`, sweeps and the registry's ranking still read old runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resnetctl.spec.metrics import LOGGED_METRICS, PERCENT_SUFFIX, public_name

#: Accuracies logged beside the errors they complement (MLflow name -> internal error name),
#: so the runs table shows the headline number without arithmetic.
ACCURACIES: dict[str, str] = {"val_top1_acc_pct": "val_top1_error"}


def mlflow_name(name: str) -> str:
    """The MLflow name of a metric: `val_top1_error` -> `val_top1_error_pct`; other names, and
    names that already carry the suffix, unchanged (`spec.metrics.public_name`)."""
    return public_name(name)


#: New MLflow name -> the name runs logged before the unit convention used.
LEGACY_ALIASES: dict[str, str] = {
    mlflow_name(name): name for name in LOGGED_METRICS if mlflow_name(name) != name
}


def to_mlflow(metrics: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, float]:
    """The `keys` present in `metrics` (internal names) under their MLflow names, plus the
    accuracies of `ACCURACIES` whose error is among them."""
    logged = {mlflow_name(key): float(metrics[key]) for key in keys if key in metrics}
    for accuracy, error in ACCURACIES.items():
        if error in keys and error in metrics:
            logged[accuracy] = 100.0 - float(metrics[error])
    return logged


def candidates(name: str) -> tuple[str, ...]:
    """The names a metric may be stored under, newest first: its MLflow name, then the old
    name (for an internal or a new name alike)."""
    new = mlflow_name(name)
    old = LEGACY_ALIASES.get(new) or new.removesuffix(PERCENT_SUFFIX)
    return (new,) if old == new else (new, old)


def history(client: Any, run_id: str, name: str) -> list[Any]:
    """The metric history of `name` (internal or MLflow name) in run `run_id`, under whichever
    name the run logged it: the MLflow name, else the old one; one value per step, ordered by
    step. Empty when neither exists.

    MLflow keeps every value logged at a step. An epoch trained again after a restore is logged
    again (`tracking.callback`), and the value logged last (the latest timestamp) is the one
    of the weights the run went on with: it is the one kept here."""
    for key in candidates(name):
        found = client.get_metric_history(run_id, key)
        if found:
            return last_per_step(found)
    return []


def last_per_step(metrics: Any) -> list[Any]:
    """One metric per step, the one logged last (latest timestamp; on a tie, the later in
    `metrics`), ordered by step."""
    last: dict[int, Any] = {}
    for metric in sorted(metrics, key=lambda m: m.timestamp):  # stable: ties keep their order
        last[metric.step] = metric
    return [last[step] for step in sorted(last)]
