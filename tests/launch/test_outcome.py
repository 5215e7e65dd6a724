"""The summary `submit` prints."""

from __future__ import annotations

import io

from rich.console import Console

from resnetctl.launch.outcome import RunSummary


def _summary() -> RunSummary:
    return RunSummary(
        succeeded=True,
        run_name="quickstart-1",
        mlflow_run_id="abc",
        mlflow_url="sqlite:///mlflow.db",
        storage_path="/runs/quickstart-1",
        seconds=73.0,
        startup_seconds=32.1,
        epochs_completed=8,
        metrics={
            "val_top1_error_pct": 0.8333,
            "val_top1_acc_pct": 99.17,
            "final_val_top1_acc_pct": 99.17,
            "total_seconds": 72.98,
            "startup_seconds": 32.11,
            "best_epoch": 6.0,
            "model_parameters": 269722.0,
        },
    )


def test_the_table_shows_each_figure_once_and_counts_whole() -> None:
    console = Console(file=io.StringIO(), width=120)
    _summary().render(console)
    table = console.file.getvalue()
    assert "val_top1_error_pct" in table and "0.8333" in table
    for repeated in ("total_seconds", "startup_seconds", "final_val_top1_acc_pct"):
        assert repeated not in table
    assert "seconds to first step" in table and "32.1" in table
    assert "269,722" in table and "2.697e+05" not in table
    (best,) = [line for line in table.splitlines() if "best_epoch" in line]
    assert best.replace("│", " ").split() == ["best_epoch", "6"]


def test_json_keeps_every_summary_metric() -> None:
    metrics = _summary().as_dict()["metrics"]
    assert {"total_seconds", "startup_seconds", "final_val_top1_acc_pct"} <= set(metrics)
