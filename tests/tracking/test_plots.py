"""Training-curve figures: the paper's line styles, and a PNG on disk."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from resnetctl.tracking.plots import draw_error_curves, plot_error_curves  # noqa: E402


def test_training_error_is_thin_and_dashed_and_held_out_error_bold_and_solid() -> None:
    fig, ax = plt.subplots()
    series = {"train_top1_error": [(2, 30.0), (1, 50.0)], "val_top1_error": [(1, 55.0)]}
    draw_error_curves(ax, "ResNet-20", series, "C3", test_name="test")
    train, test = ax.get_lines()
    plt.close(fig)
    assert train.get_label() == "ResNet-20 train" and test.get_label() == "ResNet-20 test"
    assert train.get_linestyle() == "--" and test.get_linestyle() == "-"
    assert train.get_linewidth() < test.get_linewidth()
    assert list(train.get_xdata()) == [1, 2] and list(train.get_ydata()) == [50.0, 30.0]
    assert train.get_color() == test.get_color() == "C3"


def test_a_missing_series_draws_nothing() -> None:
    fig, ax = plt.subplots()
    draw_error_curves(ax, "plain-20", {"val_top1_error": [(1, 10.0)]}, "C0")
    labels = [line.get_label() for line in ax.get_lines()]
    plt.close(fig)
    assert labels == ["plain-20 val"]


def test_plot_error_curves_writes_a_png(tmp_path: Path) -> None:
    runs = {
        "a": {"train_top1_error": [(1, 40.0), (2, 20.0)], "val_top1_error": [(1, 45.0)]},
        "b": {"train_top1_error": [(1, 60.0)]},
    }
    path = plot_error_curves(runs, tmp_path / "nested" / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
