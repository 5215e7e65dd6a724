"""Run an experiment: a `resnetctl.tune` sweep underneath, then the paper's table and figures
on the sweep's MLflow parent run, each trial's checkpoint and Fig. 7 on its child run."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnetctl.reproduce.experiments import Experiment
from resnetctl.reproduce.results import (
    ARTIFACT_DIR,
    NetResult,
    degradation_verdicts,
    metric_curves,
    net_result,
    plot_figure6,
    shortcut_verdicts,
    sort_key,
    table_csv,
    table_markdown,
)
from resnetctl.storage import StoragePath

REPRODUCE_TAG = "resnetctl.reproduce"


@dataclass
class ExperimentReport:
    """What `resnetctl reproduce` prints and records."""

    kind: str
    sweep: str
    parent_run_id: str
    parent_url: str
    tracking_uri: str
    nets: list[NetResult]
    verdicts: list[str]
    notes: list[str]
    interrupted: bool
    seconds: float
    files: list[Path] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)
    responses_markdown: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "experiment": self.kind,
            "sweep": self.sweep,
            "mlflow_parent_run_id": self.parent_run_id,
            "mlflow_url": self.parent_url,
            "interrupted": self.interrupted,
            "seconds": round(self.seconds, 1),
            "x_axis": "epoch",
            "errors": "percent",
            "nets": [net.as_dict() for net in self.nets],
            "verdicts": self.verdicts,
            "notes": self.notes,
            "files": [str(p) for p in self.files],
            "artifacts": self.artifacts,
            "layer_responses": self.responses,
        }


def plan(experiment: Experiment) -> Any:
    """Check the experiment's sweep before anything starts (raises `SpecError`)."""
    from resnetctl.tune import plan_sweep

    record = plan_sweep(experiment.sweep_request())
    record.notes.extend(experiment.notes)
    return record


def run_experiment(
    experiment: Experiment,
    record: Any,
    *,
    out_dir: Path | None = None,
    analyze: bool = True,
    console: Any = None,
    resume: bool = False,
) -> ExperimentReport:
    """Run the planned sweep (or continue an interrupted one: `resume`), then write and log
    the table and figures. A finished sweep resumed only has its results summarised again."""
    from resnetctl.tune import run_sweep

    started = time.monotonic()
    outcome = run_sweep(record, resume=resume, console=console)
    report = summarise(experiment, outcome, out_dir=out_dir, analyze=analyze)
    report.seconds = time.monotonic() - started
    return report


def _data_facts(spec: Any, cache: dict[str, tuple[int, int]]) -> tuple[int, int]:
    """Steps per epoch and number of classes of a trial's data (prepared once per data set)."""
    from resnetctl.data import prepare_dataset
    from resnetctl.spec.steps import steps_per_epoch

    key = spec.data.model_dump_json() + str(spec.train.per_worker_batch(spec.resources.max_workers))
    if key not in cache:
        layout = prepare_dataset(spec.data)
        workers = spec.resources.max_workers
        cache[key] = (
            steps_per_epoch(
                layout.train_files,
                spec.train.per_worker_batch(workers),
                workers,
                spec.train.accumulation_steps,
            ),
            len(layout.classes),
        )
    return cache[key]


def collect(outcome: Any) -> tuple[list[NetResult], dict[str, Any]]:
    """A `NetResult` per trial, in the paper's order, and each trial's spec by trial id."""
    record = outcome.record
    facts: dict[str, tuple[int, int]] = {}
    nets, specs = [], {}
    for row in outcome.rows:
        spec = record.trial_spec(row.config)
        specs[row.trial_id] = spec
        curves = metric_curves(record.tracking_uri, row.run_id) if row.run_id else {}
        steps, classes = _data_facts(spec, facts)
        nets.append(net_result(spec, row, curves, steps_per_epoch=steps, num_classes=classes))
    nets.sort(key=sort_key)
    return nets, specs


def trial_checkpoint(record: Any, trial_id: str, spec: Any) -> StoragePath | None:
    """The trial's best checkpoint (by its spec's ranking metric) in the sweep's storage."""
    from resnetctl.storage import best_checkpoint, latest_checkpoint

    folder = StoragePath.of(record.train_storage) / trial_id
    mode = spec.checkpoint.mode or "min"
    return best_checkpoint(folder, spec.checkpoint.metric, mode) or latest_checkpoint(folder)


def attach_checkpoints(
    record: Any, nets: Sequence[NetResult], specs: dict[str, Any]
) -> dict[str, StoragePath]:
    """Copy each trial's best checkpoint into its child run as `checkpoints/best`, as `submit`
    does for its runs (`resnetctl.tune` leaves checkpoints in the sweep's storage only), so
    that `resnetctl analyze RUN_ID` finds them wherever the tracking store is read."""
    from resnetctl.tracking.run import JobRun

    found = {}
    for net in nets:
        checkpoint = trial_checkpoint(record, net.trial_id, specs[net.trial_id])
        if checkpoint is None:
            continue
        found[net.trial_id] = checkpoint
        if net.run_id:
            with checkpoint.local() as directory:
                JobRun(record.tracking_uri, net.run_id).log_checkpoint(directory, "best")
    return found


def summarise(
    experiment: Experiment, outcome: Any, *, out_dir: Path | None = None, analyze: bool = True
) -> ExperimentReport:
    """Table, Fig. 6, verdicts (and Fig. 7) of a finished sweep, written to `out_dir` (if
    given) and logged to the sweep's MLflow parent run under `reproduce/`."""
    from resnetctl.tracking.run import JobRun

    record = outcome.record
    nets, specs = collect(outcome)
    verdicts = (
        degradation_verdicts(nets) if experiment.kind == "degradation" else shortcut_verdicts(nets)
    )
    report = ExperimentReport(
        kind=experiment.kind,
        sweep=record.name,
        parent_run_id=outcome.parent_run_id,
        parent_url=outcome.parent_url,
        tracking_uri=record.tracking_uri,
        nets=nets,
        verdicts=verdicts,
        notes=list(record.notes),
        interrupted=bool(outcome.interrupted),
        seconds=float(outcome.seconds),
    )
    checkpoints = attach_checkpoints(record, nets, specs)
    parent = JobRun(record.tracking_uri, outcome.parent_run_id)
    parent.set_tags({REPRODUCE_TAG: experiment.kind})
    with tempfile.TemporaryDirectory(prefix="resnetctl-reproduce-") as tmp:
        folder = out_dir or Path(tmp)
        files = write_tables_and_figure(experiment.kind, nets, verdicts, folder, record.name)
        if analyze and checkpoints:
            files += _layer_responses(report, nets, specs, checkpoints, folder)
        for path in files:
            parent.client.log_artifact(parent.run_id, str(path), ARTIFACT_DIR)
            report.artifacts.append(f"{ARTIFACT_DIR}/{path.name}")
        if out_dir is not None:
            report.files = files
    return report


def write_tables_and_figure(
    kind: str, nets: Sequence[NetResult], verdicts: Sequence[str], folder: Path, sweep: str
) -> list[Path]:
    """`<kind>.csv`, `<kind>.md` (table and verdicts) and `<kind>.png` (Fig. 6) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    csv_path = folder / f"{kind}.csv"
    csv_path.write_text(table_csv(nets), encoding="utf-8")
    md_path = folder / f"{kind}.md"
    lines = [
        f"# {kind}: sweep {sweep}",
        "",
        "Errors in percent; curves per epoch.",
        "",
        table_markdown(nets),
    ]
    if verdicts:
        lines += ["", *(f"- {v}" for v in verdicts)]
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot = plot_figure6(
        nets,
        folder / f"{kind}.png",
        kind=kind,
        title=f"{kind} ({sweep}): training error dashed, test error solid",
    )
    return [csv_path, md_path, plot]


def _layer_responses(
    report: ExperimentReport,
    nets: Sequence[NetResult],
    specs: dict[str, Any],
    checkpoints: dict[str, StoragePath],
    folder: Path,
) -> list[Path]:
    """Fig. 7 of every trained net: per net on its child run, the overlay on the parent."""
    from resnetctl.analysis.report import (
        COMPARE_CSV,
        COMPARE_PLOT,
        measure,
        summary_markdown,
        write_report,
    )
    from resnetctl.analysis.targets import TrainedModel, build_from_spec
    from resnetctl.storage import load_checkpoint

    runs = []
    for net in nets:
        checkpoint = checkpoints.get(net.trial_id)
        if checkpoint is None:
            continue
        spec = specs[net.trial_id]
        state, meta = load_checkpoint(checkpoint)
        trained = TrainedModel(
            label=net.label,
            model=build_from_spec(spec, state["model"]),
            checkpoint=checkpoint,
            spec=spec,
            run_id=net.run_id,
            tracking_uri=report.tracking_uri,
            epoch=meta.get("epoch"),
        )
        runs.append(measure(trained))
    if not runs:
        return []
    target = folder / "layer_responses"
    write_report(runs, target, log=True, title=f"{report.kind}: std of 3x3 layer responses")
    report.responses = [run.summary() for run in runs]
    report.responses_markdown = summary_markdown(runs)
    summary = folder / "layer_responses.md"
    summary.write_text(report.responses_markdown, encoding="utf-8")
    shared = [target / COMPARE_CSV, target / COMPARE_PLOT] if len(runs) > 1 else []
    return [*shared, summary]
