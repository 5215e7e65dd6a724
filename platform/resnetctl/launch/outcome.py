"""The outcome of a job as `submit` prints it: a table, or JSON with `--json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

#: Summary metrics the table leaves out: the rows "seconds" and "seconds to first step" say the
#: same, and the final accuracy is the last epoch's `val_top1_acc_pct` (JSON keeps them all).
REPEATED_IN_TABLE = frozenset({"total_seconds", "startup_seconds", "final_val_top1_acc_pct"})
#: Counts, printed whole (269,722 rather than 2.697e+05).
COUNTS = frozenset({"model_parameters", "model_multiply_adds", "best_epoch"})


def _value(key: str, value: float) -> str:
    return f"{value:,.0f}" if key in COUNTS else f"{value:.4g}"


@dataclass
class RunSummary:
    """The outcome of a job, printed as a table or JSON."""

    succeeded: bool
    run_name: str
    mlflow_run_id: str
    mlflow_url: str
    storage_path: str
    seconds: float
    startup_seconds: float | None = None  # from submit to the first training step
    epochs_completed: int = 0
    # The last epoch's metrics and the summary metrics, under their MLflow names (with units).
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: str | None = None
    model_uri: str | None = None
    # This run's registered version: `models:/NAME@best` when it holds the alias, else
    # `models:/NAME/N`; and what the registry did about the alias, and why.
    registered_model: str | None = None
    registry_decision: str | None = None
    error: str | None = None
    log_file: str | None = None  # what Ray and MLflow printed: resnetctl.log in the run's folder

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def render(self, console: Console) -> None:
        """The summary table."""
        table = Table(
            title=f"{'finished' if self.succeeded else 'FAILED'}: {self.run_name}",
            show_header=False,
        )
        rows: list[tuple[str, str]] = [("epochs", str(self.epochs_completed))]
        rows += [
            (key, _value(key, value))
            for key, value in self.metrics.items()
            if key not in REPEATED_IN_TABLE
        ]
        rows += [
            ("seconds", f"{self.seconds:.1f}"),
            ("seconds to first step", f"{self.startup_seconds or float('nan'):.1f}"),
            ("mlflow run", self.mlflow_run_id),
            ("mlflow url", self.mlflow_url),
            ("checkpoints", self.storage_path),
            ("model", self.registered_model or self.model_uri or ""),
            *([("registry", self.registry_decision)] if self.registry_decision else []),
            ("log", self.log_file or ""),
        ]
        if self.error:
            rows.append(("error", self.error))
        for key, value in rows:
            table.add_row(key, value)
        console.print(table)
