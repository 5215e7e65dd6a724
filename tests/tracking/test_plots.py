"""Training-curve figures: the paper's line styles, and a PNG on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from resnetctl.tracking.plots import draw_error_curves, plot_error_curves, pyplot


@pytest.fixture
def plt() -> Any:
    # When the test runs, not when it is collected: by then $RESNETCTL_CACHE is the suite's, where
    # pyplot() puts matplotlib's font cache.
    return pyplot()


def test_training_error_is_thin_and_dashed_and_held_out_error_bold_and_solid(plt: Any) -> None:
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


def test_a_missing_series_draws_nothing(plt: Any) -> None:
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


def _history(epochs: int = 4) -> dict[str, list[tuple[int, float]]]:
    return {
        "train_top1_error": [(e, 40.0 / e) for e in range(1, epochs + 1)],
        "val_top1_error": [(e, 45.0 / e) for e in range(1, epochs + 1)],
        "train_loss": [(e, 2.0 / e) for e in range(1, epochs + 1)],
        "val_loss": [(e, 2.2 / e) for e in range(1, epochs + 1)],
    }


def test_a_runs_curves_are_titled_with_model_data_and_run_with_a_log_error_axis(plt: Any) -> None:
    from resnetctl.spec import load_spec
    from resnetctl.tracking.plots import curves_figure, curves_title
    from tests.conftest import JOBS

    title = curves_title(load_spec(JOBS / "quickstart.yaml"), "quickstart-20261202-190440")
    assert title == "cifar_resnet20 (shortcut A) on digits · quickstart-20261202-190440"
    fig = curves_figure(_history(), title)
    error, loss = fig.axes  # two panels
    assert fig._suptitle.get_text() == title
    assert error.get_yscale() == "log" and loss.get_yscale() == "log"
    assert [line.get_label() for line in error.get_lines()] == ["train", "val"]
    assert [line.get_label() for line in loss.get_lines()] == ["train", "val"]
    assert list(loss.get_lines()[1].get_ydata()) == [2.2, 1.1, 2.2 / 3, 0.55]
    plt.close(fig)


def test_a_run_without_val_loss_draws_the_train_loss_and_skips_zero_errors(plt: Any) -> None:
    from resnetctl.tracking.plots import curves_figure

    history = _history(2)
    del history["val_loss"]
    history["train_top1_error"].append((3, 0.0))  # a log axis cannot show 0 %
    fig = curves_figure(history, "t")
    error, loss = fig.axes
    assert [line.get_label() for line in loss.get_lines()] == ["train"]
    assert list(error.get_lines()[0].get_xdata()) == [1, 2]
    plt.close(fig)


def test_a_sweeps_comparison_has_one_colour_per_trial_on_a_log_axis(
    tmp_path: Path, plt: Any
) -> None:
    from resnetctl.tracking.plots import comparison_figure, sweep_comparison_png

    runs = {"resnet20-A": _history(), "plain20": _history(3)}
    fig = comparison_figure(runs, "sweep depth: top-1 error by trial")
    (ax,) = fig.axes
    assert ax.get_title() == "sweep depth: top-1 error by trial" and ax.get_yscale() == "log"
    lines = ax.get_lines()
    assert len(lines) == 4 and len({line.get_color() for line in lines}) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["resnet20-A", "plain20"]
    plt.close(fig)
    path = sweep_comparison_png(runs, tmp_path / "cmp.png", "depth")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
