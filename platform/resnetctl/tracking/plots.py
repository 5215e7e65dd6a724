"""Training-curve figures in the paper's style: thin dashed training error, bold validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

Curve = Sequence[tuple[float, float]]


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
    import matplotlib

    matplotlib.use("Agg")  # no display on workers or CI
    import matplotlib.pyplot as plt

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
