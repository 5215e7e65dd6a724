"""Training-curve figures in the paper's style: thin dashed training error, bold validation.

`curves_figure` is a run's (error and loss panels, titled with model, data and run);
`comparison_figure` a sweep's (one colour per trial). Both return the figure so that tests
read its titles and scales; `save_figure` writes the PNG."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from resnetctl.footprint import matplotlib_config_dir

Curve = Sequence[tuple[float, float]]

ERROR_KEYS = ("train_top1_error", "val_top1_error")
LOSS_KEYS = ("train_loss", "val_loss")
#: The metric histories a run's curves PNG draws.
CURVE_METRICS = ERROR_KEYS + LOSS_KEYS


def draw_error_curves(
    ax: Any, label: str, series: Mapping[str, Curve], colour: str, *, test_name: str = "val"
) -> None:
    """Draw one network's curves on `ax` as the paper does: training error thin and dashed,
    held-out error bold and solid; a missing series is skipped."""
    for key, style, width, suffix in (
        ("train_top1_error", "--", 1.0, "train"),
        ("val_top1_error", "-", 2.0, test_name),
    ):
        points = sorted(series.get(key, ()))
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, ys, style, lw=width, color=colour, label=f"{label} {suffix}")


def plot_error_curves(
    runs: Mapping[str, Mapping[str, Curve]], path: Path, *, xlabel: str = "epoch"
) -> Path:
    """Write a PNG with one colour per run: train_top1_error dashed, val_top1_error solid;
    errors are in percent, as the training loop reports them."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for index, (label, series) in enumerate(runs.items()):
        draw_error_curves(ax, label, series, f"C{index % 10}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def pyplot() -> Any:
    """matplotlib's pyplot, drawing to files (no display on workers or CI), with its config and
    font cache in resnetctl's cache folder rather than the user's home."""
    os.environ.setdefault("MPLCONFIGDIR", str(matplotlib_config_dir()))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def curves_title(spec: Any, run_name: str) -> str:
    """`<model> on <data> · <run>`: what the figure shows, readable without the run page."""
    model = spec.model.name or f"{spec.model.family}-{spec.model.depth}"
    if spec.model.shortcut:
        model += f" (shortcut {spec.model.shortcut})"
    source = spec.data.source
    data = source.kind
    root = getattr(source, "root", None)
    if root:
        data += f" {Path(str(root).rstrip('/')).name}"
    return f"{model} on {data} · {run_name}"


def _error_axis(ax: Any) -> None:
    # Log scale: the late epochs, where ResNets differ by a fraction of a percent, stay legible
    # beside the first epoch's tens of percent (the paper's figures flatten them).
    ax.set_yscale("log")
    ax.set_ylabel("top-1 error (%, log scale)")
    ax.grid(alpha=0.3, which="both")


def _plot_positive(ax: Any, points: Curve, *args: Any, **kwargs: Any) -> None:
    # A log axis cannot show 0 % error: such points are dropped rather than clipped.
    kept = [(x, y) for x, y in sorted(points) if y > 0]
    if kept:
        xs, ys = zip(*kept, strict=True)
        ax.plot(xs, ys, *args, **kwargs)


def curves_figure(series: Mapping[str, Curve], title: str) -> Any:
    """A run's figure: top-1 error (train dashed, val bold) beside the loss (train and, when
    logged, val), both on log axes, against epoch; titled `title`."""
    plt = pyplot()
    fig, (error_ax, loss_ax) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=100)
    for key, style, width, label in (
        ("train_top1_error", "--", 1.0, "train"),
        ("val_top1_error", "-", 2.0, "val"),
    ):
        _plot_positive(error_ax, series.get(key, ()), style, lw=width, color="C0", label=label)
    _error_axis(error_ax)
    error_ax.set_title("top-1 error")
    for key, style, width, label in (
        ("train_loss", "--", 1.0, "train"),
        ("val_loss", "-", 2.0, "val"),
    ):
        _plot_positive(loss_ax, series.get(key, ()), style, lw=width, color="C1", label=label)
    loss_ax.set_title("loss")
    # Log too: an unsettled first epoch's validation loss (tens) would flatten the rest.
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("cross-entropy (log scale)")
    loss_ax.grid(alpha=0.3, which="both")
    for ax in (error_ax, loss_ax):
        ax.set_xlabel("epoch")
        if ax.get_lines():
            ax.legend(fontsize="small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def comparison_figure(
    runs: Mapping[str, Mapping[str, Curve]], title: str, *, xlabel: str = "epoch"
) -> Any:
    """A sweep's figure: every run's top-1 error in its own colour (train dashed, val bold) on
    one log-scale axis, titled `title`."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.6), dpi=100)
    for index, (label, series) in enumerate(runs.items()):
        colour = f"C{index % 10}"
        _plot_positive(ax, series.get("train_top1_error", ()), "--", lw=1.0, color=colour)
        _plot_positive(ax, series.get("val_top1_error", ()), "-", lw=2.0, color=colour, label=label)
    _error_axis(ax)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    if ax.get_lines():
        ax.legend(fontsize="small", title="val (bold), train (dashed)", title_fontsize="small")
    fig.tight_layout()
    return fig


def save_figure(fig: Any, path: Path) -> Path:
    """Write `fig` as PNG at `path` (folders created) and release it."""
    plt = pyplot()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def sweep_comparison_png(runs: Mapping[str, Mapping[str, Curve]], path: Path, sweep: str) -> Path:
    """The comparison PNG of a sweep's trials at `path`."""
    return save_figure(comparison_figure(runs, f"sweep {sweep}: top-1 error by trial"), path)
