"""Names of the metrics every epoch reports: one list that the spec, the training loop,
checkpoint ranking, schedules and tracking all refer to.

A metric has one public name, the one MLflow, `--json`, the summary table, the spec and the
docs use: a metric in percent ends in `_pct` (`val_top1_error_pct`). The training loop,
checkpoints (`meta.json`) and Ray Tune keep the internal name (`val_top1_error`), which a spec
or `tune --metric` still accepts, with a deprecation warning.
"""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

EpochMetricName = Literal[
    "train_loss",
    "train_top1_error",
    "train_top5_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "lr",
    "images_per_second",
    "epoch_seconds",
    # Of the training steps, on rank 0: waiting for the input pipeline vs computing.
    "data_wait_seconds",
    "compute_seconds",
]
EPOCH_METRICS: tuple[str, ...] = get_args(EpochMetricName)
# Reported every epoch besides those when `train.ema` is set: the validation of the EMA weights.
EmaMetricName = Literal["val_loss_ema", "val_top1_error_ema", "val_top5_error_ema"]
EMA_METRICS: tuple[str, ...] = get_args(EmaMetricName)
# What checkpoint ranking and the plateau schedule may watch (EMA ones need `train.ema`).
MetricName = Literal[EpochMetricName, EmaMetricName]
RANKED_METRICS: tuple[str, ...] = EPOCH_METRICS + EMA_METRICS
# Reported once, with the last epoch, when `train.final_eval` asks for the paper's protocol:
# the 10-crop errors of the best checkpoint, and which epoch that checkpoint is.
FINAL_EVAL_METRICS: tuple[str, ...] = (
    "val_loss_10crop",
    "val_top1_error_10crop",
    "val_top5_error_10crop",
    "final_eval_epoch",
)
# Everything tracking logs from a report.
LOGGED_METRICS: tuple[str, ...] = EPOCH_METRICS + EMA_METRICS + FINAL_EVAL_METRICS
# Reported every `train.log_every_n_steps` optimiser steps, without a checkpoint, and logged
# with the global step (not the epoch) as MLflow step: loss and rate of that step, throughput
# since the previous step report, and the gradient norm when `train.grad_clip_norm` is set;
# the worker count and images per optimiser step the step was trained with (they change when
# an elastic run resizes).
STEP_METRICS: tuple[str, ...] = (
    "step_train_loss",
    "step_lr",
    "step_images_per_second",
    "step_grad_norm",
    "workers",
    "step_global_batch",
)
# The key that marks a step report (epoch reports carry `epoch` instead).
STEP_REPORT_KEY = "global_step"
# Keys of the reports that carry a checkpoint from the middle of an epoch: its global step and
# why it was written; NOTICE_KEY (1) marks the checkpoint a new preemption notice caused.
CHECKPOINT_STEP_KEY = "checkpoint_step"
CHECKPOINT_REASON_KEY = "checkpoint_reason"
NOTICE_KEY = "preemption_notice"
# Set (1) on a checkpoint a notice, a drain's deadline or a stop request caused (not routine).
URGENT_KEY = "urgent_checkpoint"
# The key of the report a restored worker group makes first (the step it continues after),
# with `steps_redone` and `restart_seconds` when the run's control actor knew them.
RESTORE_KEY = "restored_step"
# What tracking logs of faults: notices heard, steps trained twice, seconds a restart cost.
FAULT_METRICS: tuple[str, ...] = ("preemptions", "restarts", "steps_redone", "restart_seconds")

# Metrics for which lower is better (losses, errors, durations); used to default the ranking
# mode. Read off the names so that a new metric needs no second list.
LOWER_IS_BETTER = frozenset(
    m
    for m in EPOCH_METRICS + EMA_METRICS + FINAL_EVAL_METRICS
    if any(word in m.split("_") for word in ("loss", "error", "seconds"))
)


def default_mode(metric: str) -> Literal["min", "max"]:
    """The optimisation direction of a metric (by its internal or public name)."""
    return "min" if internal_name(metric) in LOWER_IS_BETTER else "max"


#: The suffix of a metric in percent.
PERCENT_SUFFIX = "_pct"
#: A name holding one of these words is in percent.
_PERCENT_WORDS = frozenset({"error", "acc"})


def public_name(name: str) -> str:
    """The public (MLflow) name of a metric: `val_top1_error` -> `val_top1_error_pct`; other
    names, and names that already carry the suffix, unchanged."""
    if name.endswith(PERCENT_SUFFIX) or not _PERCENT_WORDS & set(name.split("_")):
        return name
    return f"{name}{PERCENT_SUFFIX}"


def internal_name(name: str) -> str:
    """The name the training loop reports a metric under: `val_top1_error_pct` ->
    `val_top1_error`; an internal or unknown name unchanged."""
    bare = name.removesuffix(PERCENT_SUFFIX)
    return bare if bare != name and bare in LOGGED_METRICS else name


class MetricNameDeprecation(FutureWarning):
    """A metric named by its internal name where its public name is the one to write."""


def is_old_name(name: str) -> bool:
    """Whether `name` is the internal name of a metric whose public name differs."""
    return name in LOGGED_METRICS and public_name(name) != name


def warn_old_name(name: str, where: str) -> None:
    """A `MetricNameDeprecation` warning when `name`, given at `where`, is an old name."""
    if is_old_name(name):
        warnings.warn(
            f"{where}: {name!r} is the old name of {public_name(name)!r}, the name MLflow, "
            f"--json and the docs use: write {public_name(name)}",
            MetricNameDeprecation,
            stacklevel=2,
        )


def _to_internal(value: Any) -> Any:
    """A ranked metric's internal name; an unknown name is refused with the public names."""
    if not isinstance(value, str):
        return value
    name = internal_name(value)
    if name not in RANKED_METRICS:
        known = ", ".join(public_name(m) for m in RANKED_METRICS)
        raise ValueError(f"unknown metric {value!r}; one of: {known}")
    return name


#: A metric a spec field names (checkpoint ranking, the plateau schedule): written with its
#: public name (the internal one is accepted), held internally under the loop's name, and
#: written back (dumps, the schema, MLflow parameters) under the public one.
RankedMetric = Annotated[
    MetricName,
    BeforeValidator(_to_internal),
    PlainSerializer(public_name, return_type=str),
    WithJsonSchema({"type": "string", "enum": [public_name(m) for m in RANKED_METRICS]}),
]


def ranked_weights(state: dict[str, Any], metric: str) -> dict[str, Any]:
    """The weights a checkpoint's state was ranked by: its EMA's for a `*_ema` metric, else the
    model's. Whatever reads a best checkpoint back (the logged model, eval, export, predict,
    fine-tuning) must take these, or it serves weights other than the ones that won the
    ranking."""
    ema = state.get("ema")
    if metric in EMA_METRICS and isinstance(ema, dict) and isinstance(ema.get("module"), dict):
        return ema["module"]
    return state["model"]
