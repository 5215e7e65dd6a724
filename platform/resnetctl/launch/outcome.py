"""The outcome of a job as `submit` prints it: a table, or JSON with `--json`."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from resnetctl.storage import StoragePath

#: The summary of the run's last job, kept in the run's folder: what `status` and a cluster
#: job's `--json` report once the job has ended.
SUMMARY_FILE = "resnetctl-summary.json"
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        """The summary `as_dict` gave (keys it does not know are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    def save(self, folder: StoragePath) -> None:
        """Keep the summary in the run's folder (`folder`: the run's storage folder)."""
        (folder / SUMMARY_FILE).write_text(json.dumps(self.as_dict(), indent=2, default=str))

    @classmethod
    def load(cls, folder: StoragePath) -> RunSummary | None:
        """The summary kept in the run's folder, or None."""
        try:
            return cls.from_dict(json.loads((folder / SUMMARY_FILE).read_text()))
        except (FileNotFoundError, OSError, ValueError, TypeError):
            return None

    def headline(self) -> str:
        """One line: epochs, the best value of the ranking metric, the final accuracy."""
        parts = [f"{self.epochs_completed} epoch{'s' if self.epochs_completed != 1 else ''}"]
        best = next((k for k in self.metrics if k.startswith("best_") and k != "best_epoch"), None)
        if best is not None:
            at = self.metrics.get("best_epoch")
            epoch = f" at epoch {at:.0f}" if at is not None else ""
            parts.append(f"{best} {self.metrics[best]:.4g}{epoch}")
        final = self.metrics.get("final_val_top1_acc_pct")
        if final is not None:
            parts.append(f"final_val_top1_acc_pct {final:.4g}")
        if self.startup_seconds is not None:
            parts.append(f"{self.seconds:.0f} s ({self.startup_seconds:.0f} s to the first step)")
        return ", ".join(parts)

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
