"""What an experiment's sweep produced, in the paper's terms: the table of final errors, the
Fig. 6 curves, the verdict on degradation, and (optionally) Fig. 7 for every trained net.

Everything here reads the sweep's MLflow runs and the trials' local checkpoints after
`resnetctl.tune.run_sweep` returns; nothing here needs Ray.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from resnetctl.analysis.targets import model_label
from resnetctl.spec import JobSpec

CURVE_KEYS = ("train_top1_error", "val_top1_error")
ARTIFACT_DIR = "reproduce"

Curve = list[tuple[int, float]]


@dataclass
class NetResult:
    """One trained net of an experiment: its final errors (percent) and curves (per epoch)."""

    label: str
    model: str
    depth: int
    variant: str
    shortcut: str | None
    params: int
    epochs: int
    iterations: int
    final_train_error: float | None
    final_test_error: float | None
    best_test_error: float | None
    seconds: float | None
    status: str
    trial_id: str
    run_id: str | None
    curves: dict[str, Curve] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, without the curves."""
        data = asdict(self)
        data.pop("curves")
        return data


def sort_key(net: NetResult) -> tuple[int, int, str]:
    """Plain nets first (the paper's left panel), then by depth and shortcut option."""
    return (0 if net.variant == "plain" else 1, net.depth, net.shortcut or "")


def metric_curves(uri: str, run_id: str) -> dict[str, Curve]:
    """Train and validation top-1 error (percent) per epoch, from the run's metric history
    (under the `_pct` names, or the bare ones of runs logged before them), keyed by the
    internal names."""
    from mlflow import MlflowClient

    from resnetctl.tracking.names import history

    client = MlflowClient(uri)
    curves = {}
    for key in CURVE_KEYS:
        points = {int(m.step): float(m.value) for m in history(client, run_id, key)}
        curves[key] = sorted(points.items())  # a resumed trial may log an epoch twice
    return curves


def _last(curve: Curve) -> float | None:
    return curve[-1][1] if curve else None


def _best(curve: Curve) -> float | None:
    values = [v for _, v in curve if math.isfinite(v)]
    return min(values) if values else None


def count_params(spec: JobSpec, num_classes: int) -> int:
    """Parameters of the spec's network with `num_classes` outputs."""
    from resnetctl.models import count_parameters, create_model

    assert spec.model.name is not None
    return count_parameters(create_model(spec.model.name, **spec.model.create_options(num_classes)))


def net_result(
    spec: JobSpec,
    row: Any,
    curves: Mapping[str, Curve],
    *,
    steps_per_epoch: int,
    num_classes: int,
) -> NetResult:
    """Combine a trial's spec, its ranked row (from `resnetctl.tune`) and its curves."""
    epochs = max((step for step, _ in curves.get("train_top1_error", [])), default=0)
    return NetResult(
        label=model_label(spec, row.label),
        model=str(spec.model.name),
        depth=int(spec.model.depth or 0),
        variant=str(spec.model.variant),
        shortcut=spec.model.shortcut if spec.model.variant != "plain" else None,
        params=count_params(spec, num_classes),
        epochs=epochs,
        iterations=epochs * steps_per_epoch,
        final_train_error=_last(curves.get("train_top1_error", [])),
        final_test_error=_last(curves.get("val_top1_error", [])),
        best_test_error=_best(curves.get("val_top1_error", [])),
        seconds=row.seconds,
        status=row.status,
        trial_id=row.trial_id,
        run_id=row.run_id,
        curves={k: list(v) for k, v in curves.items()},
    )


# -------------------------------------------------------------------------------------------
# Tables


TABLE_COLUMNS = (
    ("net", "label"),
    ("params", "params"),
    ("epochs", "epochs"),
    ("iterations", "iterations"),
    ("final train error (%)", "final_train_error"),
    ("final test error (%)", "final_test_error"),
    ("best test error (%)", "best_test_error"),
    ("seconds", "seconds"),
    ("mlflow run", "run_id"),
)


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "-"
    return str(value)


def _params(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 1e5 else f"{count / 1e3:.1f}k"


def table_markdown(nets: Sequence[NetResult]) -> str:
    """The final errors as a markdown table (what the command prints and logs)."""
    header = "| " + " | ".join(name for name, _ in TABLE_COLUMNS) + " |"
    align = (
        "|"
        + "|".join("---" if key in ("label", "run_id") else "---:" for _, key in TABLE_COLUMNS)
        + "|"
    )
    lines = [header, align]
    for net in nets:
        cells = []
        for _, key in TABLE_COLUMNS:
            value = getattr(net, key)
            if key == "params":
                cells.append(_params(value))
            elif key == "seconds":
                cells.append(_cell(value, 0))
            else:
                cells.append(_cell(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table_csv(nets: Sequence[NetResult]) -> str:
    """The final errors as CSV, with full precision and every identifying column."""
    columns = (
        "label",
        "model",
        "depth",
        "variant",
        "shortcut",
        "params",
        "epochs",
        "iterations",
        "final_train_error",
        "final_test_error",
        "best_test_error",
        "seconds",
        "status",
        "trial_id",
        "run_id",
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for net in nets:
        data = net.as_dict()
        writer.writerow(["" if data[c] is None else data[c] for c in columns])
    return buffer.getvalue()


# -------------------------------------------------------------------------------------------
# The paper's claims, checked


def degradation_verdicts(nets: Sequence[NetResult]) -> list[str]:
    """Fig. 6's two claims, for the shallowest and deepest net of each kind: the deeper plain
    net ends with higher training error; the deeper ResNet ends no worse."""
    verdicts = []
    for variant, title in (("plain", "plain"), ("residual", "ResNet")):
        group = sorted(
            (n for n in nets if n.variant == variant and n.final_train_error is not None),
            key=lambda n: n.depth,
        )
        if len(group) < 2:
            continue
        shallow, deep = group[0], group[-1]
        diff = (deep.final_train_error or 0.0) - (shallow.final_train_error or 0.0)
        if variant == "plain":
            shown = diff > 0
            claim = "degradation shown" if shown else "degradation NOT shown"
        else:
            shown = diff <= 0
            claim = "deeper ResNet no worse" if shown else "deeper ResNet WORSE"
        verdicts.append(
            f"{title}: {deep.label} final training error {deep.final_train_error:.2f}% vs "
            f"{shallow.label} {shallow.final_train_error:.2f}% ({diff:+.2f} points): {claim}"
        )
    return verdicts


def shortcut_verdicts(nets: Sequence[NetResult]) -> list[str]:
    """Table 3's ordering (C <= B <= A < plain in error) as measured, ranked by test error."""
    ranked = sorted(
        (n for n in nets if n.final_test_error is not None), key=lambda n: n.final_test_error or 0.0
    )
    if not ranked:
        return []
    order = " < ".join(f"{n.label} {n.final_test_error:.2f}%" for n in ranked)
    return [f"final test error, best first: {order} (paper, ImageNet 34 layers: C < B < A < plain)"]


# -------------------------------------------------------------------------------------------
# Figures


def figure_panels(nets: Sequence[NetResult]) -> dict[str, dict[str, dict[str, Curve]]]:
    """Fig. 6's panels: plain nets left, ResNets right."""
    panels: dict[str, dict[str, dict[str, Curve]]] = {}
    for net in nets:
        title = "plain" if net.variant == "plain" else "ResNet"
        panels.setdefault(title, {})[net.label] = net.curves
    return dict(sorted(panels.items(), key=lambda item: item[0] != "plain"))


def plot_figure6(
    nets: Sequence[NetResult], path: Path, *, kind: str, title: str | None = None
) -> Path:
    """Training (dashed) and test (solid) error against epochs, plain and ResNet panels."""
    from resnetctl.analysis.plots import plot_training_curves

    return plot_training_curves(
        figure_panels(nets),
        path,
        xlabel="epoch",
        title=title,
        colour_by_depth=kind == "degradation",
    )
