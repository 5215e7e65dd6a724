"""The paper's figures as PNG files: Fig. 6 (training curves of plain nets and ResNets side by
side) and Fig. 7 (std of the layer responses, in layer order and sorted)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from resnetctl.tracking.plots import Curve, draw_error_curves, pyplot


def _style(label: str) -> str:
    """Plain nets dashed-dotted, ResNets solid: the two families stay apart in one panel."""
    return "-." if label.lower().startswith("plain") else "-"


def plot_layer_responses(
    series: Mapping[str, Sequence[float]], path: Path, *, title: str | None = None
) -> Path:
    """Fig. 7: the std of each 3x3 layer's response (after BN, before the nonlinearity), top in
    the network's layer order, bottom sorted in descending order; one line per network."""
    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.0, 6.4), dpi=120)
    for index, (label, stds) in enumerate(series.items()):
        colour = f"C{index % 10}"
        xs = range(1, len(stds) + 1)
        top.plot(xs, list(stds), _style(label), color=colour, lw=1.4, label=label)
        bottom.plot(
            xs, sorted(stds, reverse=True), _style(label), color=colour, lw=1.4, label=label
        )
    top.set_xlabel("layer index (original)")
    bottom.set_xlabel("layer index (sorted by magnitude)")
    for ax in (top, bottom):
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        top.set_title(title, fontsize="medium")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_training_curves(
    panels: Mapping[str, Mapping[str, Mapping[str, Curve]]],
    path: Path,
    *,
    xlabel: str = "epoch",
    title: str | None = None,
    colour_by_depth: bool = True,
) -> Path:
    """Fig. 6: one panel per group of networks (the paper's plain nets left, ResNets right),
    one colour per network, training error dashed, test (validation) error solid, in percent.

    `panels` maps a panel title to `{net label: {"train_top1_error": [(x, y)], ...}}`.
    `colour_by_depth` gives a plain net and the ResNet of its depth one colour (Fig. 6);
    otherwise every net has its own.
    """
    plt = pyplot()
    count = max(1, len(panels))
    fig, axes = plt.subplots(
        1, count, figsize=(max(6.4, 5.2 * count), 4.2), dpi=120, sharey=True, squeeze=False
    )
    colours: dict[str, str] = {}
    for ax, (panel, runs) in zip(axes[0], panels.items(), strict=False):
        for label, curves in runs.items():
            key_ = _depth_key(label) if colour_by_depth else label
            colour = colours.setdefault(key_, f"C{len(colours) % 10}")
            draw_error_curves(ax, label, curves, colour, test_name="test")
        ax.set_title(panel, fontsize="medium")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0][0].set_ylabel("top-1 error (%)")
    if title:
        fig.suptitle(title, fontsize="small", wrap=True)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _depth_key(label: str) -> str:
    """`plain-20` and `ResNet-20 (A)` share a colour across panels, as in the paper."""
    head = label.split(" ")[0]
    return head.split("-")[-1] if "-" in head else label
