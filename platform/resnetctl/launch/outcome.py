"""The outcome of a job as `submit` prints it: a table, or JSON with `--json`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table


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
    registered_model: str | None = None  # `models:/NAME@best` after registering this run's
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
        rows += [(key, f"{value:.4g}") for key, value in self.metrics.items()]
        rows += [
            ("seconds", f"{self.seconds:.1f}"),
            ("seconds to first step", f"{self.startup_seconds or float('nan'):.1f}"),
            ("mlflow run", self.mlflow_run_id),
            ("mlflow url", self.mlflow_url),
            ("checkpoints", self.storage_path),
            ("model", self.registered_model or self.model_uri or ""),
            ("log", self.log_file or ""),
        ]
        if self.error:
            rows.append(("error", self.error))
        for key, value in rows:
            table.add_row(key, value)
        console.print(table)
