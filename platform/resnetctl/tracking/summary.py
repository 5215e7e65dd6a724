"""The numbers a reviewer reads first, logged once when a run ends: the best value of the
ranking metric and its epoch, the final accuracy, how long the run took and how long it took
to start, and the size of the network."""

from __future__ import annotations

import math
from typing import Any

from resnetctl.spec import JobSpec
from resnetctl.tracking.labels import NUM_CLASSES_PARAM
from resnetctl.tracking.names import history, mlflow_name

BEST_EPOCH = "best_epoch"
FINAL_ACCURACY = "final_val_top1_acc_pct"
TOTAL_SECONDS = "total_seconds"
STARTUP_SECONDS = "startup_seconds"  # from submit to the first training step
PARAMETERS = "model_parameters"
MULTIPLY_ADDS = "model_multiply_adds"  # of one forward pass at the crop size


def best_name(metric: str) -> str:
    """The summary name of the ranking metric's best value: `best_val_top1_error_pct`."""
    return f"best_{mlflow_name(metric)}"


def best_epoch(points: list[tuple[int, float]], mode: str) -> tuple[int, float] | None:
    """(epoch, value) of the best finite value, the earliest epoch on a tie (as checkpoint
    ranking picks), or None."""
    finite = sorted((step, value) for step, value in points if math.isfinite(value))
    if not finite:
        return None
    pick = min if mode == "min" else max
    return pick(finite, key=lambda point: point[1])


def model_size(spec: JobSpec, num_classes: int) -> dict[str, float]:
    """Parameters and multiply-adds (the paper's Table 1 convention) of the spec's network with
    `num_classes` outputs at the crop size; built on the meta device, so nothing is allocated."""
    import torch

    from resnetctl.models import count_macs, count_parameters, create_model

    with torch.device("meta"):
        network = create_model(str(spec.model.name), **spec.model.create_options(num_classes))
    return {
        PARAMETERS: float(count_parameters(network)),
        MULTIPLY_ADDS: float(count_macs(network, spec.pipeline.crop)),
    }


def summary_metrics(
    client: Any,
    run_id: str,
    spec: JobSpec,
    *,
    total_seconds: float,
    startup_seconds: float | None,
) -> dict[str, float]:
    """The summary metrics of run `run_id` from its logged history and parameters (a metric
    that cannot be computed, such as a best value before the first epoch, is left out)."""
    metric, mode = spec.checkpoint.metric, spec.checkpoint.mode or "min"
    summary: dict[str, float] = {TOTAL_SECONDS: float(total_seconds)}
    if startup_seconds is not None:
        summary[STARTUP_SECONDS] = float(startup_seconds)
    best = best_epoch([(m.step, m.value) for m in history(client, run_id, metric)], mode)
    if best is not None:
        summary[BEST_EPOCH], summary[best_name(metric)] = float(best[0]), best[1]
    errors = history(client, run_id, "val_top1_error")
    if errors:
        summary[FINAL_ACCURACY] = 100.0 - max(errors, key=lambda m: m.step).value
    classes = spec.model.num_classes or client.get_run(run_id).data.params.get(NUM_CLASSES_PARAM)
    if classes:
        summary.update(model_size(spec, int(classes)))
    return summary


def log_summary(client: Any, run_id: str, summary: dict[str, float], step: int) -> None:
    """Log `summary` at `step` (the last epoch, so the charts place it at the end)."""
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(key, value, now, step) for key, value in summary.items()]
    client.log_batch(run_id, metrics=metrics)


def final_metrics(client: Any, run_id: str) -> dict[str, float]:
    """The last logged value of every per-epoch metric (and its accuracy), by MLflow name."""
    from resnetctl.spec.metrics import EPOCH_METRICS
    from resnetctl.tracking.names import ACCURACIES

    wanted = [mlflow_name(key) for key in EPOCH_METRICS] + list(ACCURACIES)
    latest = client.get_run(run_id).data.metrics  # each key's value at its last step
    return {key: float(latest[key]) for key in wanted if key in latest}
