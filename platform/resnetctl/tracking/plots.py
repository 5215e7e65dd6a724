"""Training-curve figures in the paper's style: thin dashed training error, bold validation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

Curve = Sequence[tuple[int, float]]


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
        colour = f"C{index % 10}"
        for key, style, width, suffix in (
            ("train_top1_error", "--", 1.0, "train"),
            ("val_top1_error", "-", 2.0, "val"),
        ):
            points = sorted(series.get(key, ()))
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, style, lw=width, color=colour, label=f"{label} {suffix}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("top-1 error (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
