"""Names of the metrics every epoch reports: one list that the spec, the training loop,
checkpoint ranking, schedules and tracking all refer to."""

from __future__ import annotations

from typing import Literal, get_args

MetricName = Literal[
    "train_loss",
    "train_top1_error",
    "train_top5_error",
    "val_loss",
    "val_top1_error",
    "val_top5_error",
    "lr",
    "images_per_second",
    "epoch_seconds",
]
EPOCH_METRICS: tuple[str, ...] = get_args(MetricName)

# Metrics for which lower is better; used to default the ranking mode.
LOWER_IS_BETTER = frozenset(
    {
        "train_loss",
        "train_top1_error",
        "train_top5_error",
        "val_loss",
        "val_top1_error",
        "val_top5_error",
        "epoch_seconds",
    }
)


def default_mode(metric: str) -> Literal["min", "max"]:
    """The optimisation direction of a metric."""
    return "min" if metric in LOWER_IS_BETTER else "max"
