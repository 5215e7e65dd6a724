"""What a sweep produced: its trials ranked by the objective, and the MLflow parent run that
holds the sweep's settings, the ranked table, the comparison plot (the paper's Fig. 6 style)
and the best trial's spec."""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from resnetctl.spec import JobSpec, dump_spec
from resnetctl.tracking import tags
from resnetctl.tune.facts import TrialFactsCache, trial_state
from resnetctl.tune.record import SweepRecord
from resnetctl.tune.space import TrialConfig, describe_domain, describe_value

#: MLflow keeps parameter values up to this many characters.
MAX_PARAM_CHARS = 6000


class TrialRow(BaseModel):
    """One trial in the ranked table."""

    model_config = ConfigDict(extra="forbid")

    rank: int | None
    trial_id: str
    label: str
    status: str
    model: str
    depth: int | None
    shortcut: str | None
    variant: str | None
    params: dict[str, str]
    epochs: int
    planned_epochs: int | None
    metric: float | None
    best: float | None
    seconds: float | None
    run_id: str | None
    error: str | None = None
    config: TrialConfig = Field(default_factory=TrialConfig, exclude=True, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the raw Tune config)."""
        return self.model_dump(mode="json")


@dataclass
class SweepOutcome:
    """What a sweep produced."""

    record: SweepRecord
    rows: list[TrialRow]
    interrupted: bool
    parent_run_id: str
    parent_url: str
    seconds: float

    @property
    def best(self) -> TrialRow | None:
        """The first-ranked trial, if any trial reported the metric."""
        return self.rows[0] if self.rows and self.rows[0].rank == 1 else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "sweep": self.record.name,
            "experiment_path": str(self.record.experiment_path),
            "metric": self.record.metric,
            "mode": self.record.mode,
            "scheduler": self.record.scheduler,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 1),
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_url": self.parent_url,
            "best": self.best.as_dict() if self.best else None,
            "trials": [row.as_dict() for row in self.rows],
            "notes": self.record.notes,
        }


# --------------------------------------------------------------------------------------------
# Ranking


def rank_trials(
    record: SweepRecord,
    results: Any,
    unfinished: Collection[str] = (),
) -> list[TrialRow]:
    """Every trial, best first by its last reported metric; trials without it come last.
    `unfinished` trials (of a stopped sweep) are "interrupted"."""
    children = _children(record)
    facts = TrialFactsCache(record)
    rows = [_row(record, result, facts, children, unfinished) for result in results]
    sign = 1.0 if record.mode == "min" else -1.0
    ranked = sorted(
        (r for r in rows if r.metric is not None and r.status != "error"),
        key=lambda r: sign * (r.metric or 0.0),
    )
    for index, row in enumerate(ranked, 1):
        row.rank = index
    rest = [r for r in rows if r.rank is None]
    return ranked + sorted(rest, key=lambda r: r.trial_id)


def _row(
    record: SweepRecord,
    result: Any,
    facts: TrialFactsCache,
    children: dict[str, Any],
    unfinished: Collection[str],
) -> TrialRow:
    """One of Tune's results as a row (not ranked yet)."""
    metrics = result.metrics or {}
    trial_id = str(metrics.get("trial_id") or Path(result.path).name)
    config = TrialConfig.model_validate(dict(result.config or {}))
    info = facts.of(trial_id, config)
    epoch = metrics.get("epoch")
    value = _finite(metrics.get(record.metric))
    history = _history(result, record.metric)
    if result.error is not None:
        status = "error"
    elif trial_id in unfinished:
        status = "interrupted"
    else:
        status = trial_state("TERMINATED", epoch, info.epochs)
    child = children.get(trial_id)
    return TrialRow(
        rank=None,
        trial_id=trial_id,
        label=info.label,
        status=status,
        model=info.model,
        depth=info.depth,
        shortcut=info.shortcut if info.model else None,
        variant=info.variant,
        params=dict(info.params),
        epochs=int(epoch or 0),
        planned_epochs=info.epochs,
        metric=value,
        best=(min if record.mode == "min" else max)(history) if history else value,
        seconds=_finite(metrics.get("time_total_s")),
        run_id=child.info.run_id if child else None,
        error=_first_line(result.error) if result.error is not None else None,
        config=config,
    )


def _children(record: SweepRecord) -> dict[str, Any]:
    """The sweep's child runs by trial id."""
    from mlflow import MlflowClient

    client = MlflowClient(record.tracking_uri)
    experiment = client.get_experiment_by_name(record.experiment)
    if experiment is None:
        return {}
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=tags.child_runs_filter(record.parent_run_id),
        max_results=10_000,
    )
    return {run.data.tags.get(tags.TRIAL_TAG, ""): run for run in runs}


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _history(result: Any, metric: str) -> list[float]:
    frame = getattr(result, "metrics_dataframe", None)
    if frame is None or metric not in getattr(frame, "columns", ()):
        return []
    return [v for v in (_finite(x) for x in frame[metric].tolist()) if v is not None]


def _first_line(error: BaseException) -> str:
    seen: BaseException = error
    while seen.__cause__ is not None:
        seen = seen.__cause__
    lines = [line for line in str(seen).strip().splitlines() if line.strip()]
    return f"{type(seen).__name__}: {lines[-1] if lines else ''}"


def rows_csv(record: SweepRecord, rows: Sequence[TrialRow]) -> str:
    """The ranked table as CSV (one column per searched field)."""
    params = list(record.space.domains)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    metric = record.metric
    writer.writerow(
        ["rank", "trial_id", "status", "model", "depth", "shortcut", "variant", *params,
         "epochs", metric, f"best_{metric}", "seconds", "mlflow_run_id", "error"]
    )  # fmt: skip
    for row in rows:
        writer.writerow(
            [row.rank or "", row.trial_id, row.status, row.model, row.depth, row.shortcut,
             row.variant, *(row.params.get(p, "") for p in params), row.epochs,
             _csv_number(row.metric), _csv_number(row.best), _csv_number(row.seconds),
             row.run_id or "", row.error or ""]
        )  # fmt: skip
    return buffer.getvalue()


def _csv_number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def best_spec(record: SweepRecord, row: TrialRow) -> JobSpec:
    """The resolved spec of a trial, as `resnetctl submit` takes it."""
    return record.trial_spec(row.config)


def best_spec_yaml(record: SweepRecord, row: TrialRow) -> str:
    """The trial's spec as a job YAML with a header saying where it came from."""
    header = (
        f"# Best trial {row.trial_id} ({row.label}) of sweep {record.name}: "
        f"{record.metric} {describe_value(row.metric)} after {row.epochs} epochs.\n"
        f"# Run it with: resnetctl submit FILE\n"
    )
    return header + dump_spec(best_spec(record, row))


# --------------------------------------------------------------------------------------------
# The MLflow parent run


def start_parent(record: SweepRecord) -> Any:
    """The sweep's MLflow parent run: settings as params, the base spec and space as files."""
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from resnetctl.tracking.experiment import ensure_experiment
    from resnetctl.tracking.run import JobRun, environment_tags
    from resnetctl.tracking.store import default_artifact_root

    client = MlflowClient(record.tracking_uri)
    experiment_id = ensure_experiment(
        client, record.experiment, artifact_location=default_artifact_root(record.tracking_uri)
    )
    run_tags = {
        **environment_tags(),
        tags.SWEEP_TAG: record.name,
        tags.ROLE_TAG: "parent",
        tags.JOB_TAG: record.base.name,
    }
    run = client.create_run(experiment_id, run_name=record.name, tags=run_tags)
    params = [Param(k, v[:MAX_PARAM_CHARS]) for k, v in parent_params(record).items()]
    client.log_batch(run.info.run_id, params=params)
    parent = JobRun(record.tracking_uri, run.info.run_id)
    parent.log_text(dump_spec(record.base), "spec/base.yaml")
    parent.log_text(json.dumps(record.space.model_dump(mode="json"), indent=2), "search/space.json")
    return parent


def parent_params(record: SweepRecord) -> dict[str, str]:
    """The sweep's settings as the parent run's MLflow params."""
    space = record.space
    params = {
        "tune.metric": record.metric,
        "tune.mode": record.mode,
        "tune.scheduler": record.scheduler,
        "tune.samples": str(record.samples),
        "tune.max_concurrent": str(record.max_concurrent),
        "tune.trials": str(space.size(record.samples)),
        "tune.base_spec": record.base_source,
    }
    if record.scheduler == "asha":
        params["tune.grace_period"] = str(record.grace_period)
        params["tune.reduction_factor"] = f"{record.reduction_factor:g}"
    if space.models:
        params["search.model"] = ", ".join(p.label for p in space.models)
    params.update({f"search.{path}": describe_domain(d) for path, d in space.domains.items()})
    return params


def finish_parent(
    parent: Any, record: SweepRecord, rows: Sequence[TrialRow], interrupted: bool
) -> None:
    """Results table, comparison plot (the paper's Fig. 6 style) and best spec on the parent."""
    from resnetctl.tracking.plots import sweep_comparison_png

    parent.log_text(rows_csv(record, rows), "results.csv")
    curves = _curves(record, rows)
    if curves:
        with tempfile.TemporaryDirectory() as tmp:
            path = sweep_comparison_png(curves, Path(tmp) / "error_curves.png", record.name)
            parent.client.log_artifact(parent.run_id, str(path), "plots")
    best = rows[0] if rows and rows[0].rank == 1 else None
    if best is not None:
        parent.log_text(best_spec_yaml(record, best), "best/spec.yaml")
        parent.client.log_metric(parent.run_id, f"best_{record.metric}", best.metric or 0.0)
        parent.set_tags(
            {
                tags.BEST_TRIAL_TAG: best.trial_id,
                tags.BEST_RUN_TAG: best.run_id or "",
                tags.BEST_LABEL_TAG: best.label,
            }
        )
    parent.end("KILLED" if interrupted else "FINISHED")


def _curves(record: SweepRecord, rows: Sequence[TrialRow]) -> dict[str, dict[str, list]]:
    """Each trial's train and val top-1 error per epoch, from its child run (under the name
    with its unit, or a run's older name)."""
    from mlflow import MlflowClient

    from resnetctl.tracking.names import history

    client = MlflowClient(record.tracking_uri)
    curves: dict[str, dict[str, list]] = {}
    for row in rows:
        if not row.run_id:
            continue
        label = row.label if row.label not in curves else f"{row.label} {row.trial_id}"
        curves[label] = {
            key: [(m.step, m.value) for m in history(client, row.run_id, key)]
            for key in ("train_top1_error", "val_top1_error")
        }
    return curves
