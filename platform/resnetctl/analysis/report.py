"""Fig. 7 for one or several trained runs: measure the layer responses on validation data, write
CSV and PNG files, and log them to each run's MLflow record."""

from __future__ import annotations

import csv
import io
import math
import re
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnetctl.analysis.plots import plot_layer_responses
from resnetctl.analysis.responses import AnalysisError, LayerResponse, layer_responses
from resnetctl.analysis.targets import TrainedModel
from resnetctl.spec import JobSpec

#: Where the files go in each run's MLflow artifacts.
ARTIFACT_DIR = "analysis"
CSV_NAME = "layer_responses.csv"
PLOT_NAME = "layer_responses.png"
COMPARE_CSV = "layer_responses_compare.csv"
COMPARE_PLOT = "layer_responses_compare.png"
CSV_COLUMNS = ("index", "sorted_rank", "conv", "norm", "channels", "std", "mean", "count")


@dataclass
class RunResponses:
    """One trained network's layer responses."""

    label: str
    responses: list[LayerResponse]
    run_id: str | None = None
    tracking_uri: str | None = None
    checkpoint: str = ""
    images: int = 0
    files: list[Path] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)

    @property
    def stds(self) -> list[float]:
        """The stds in layer order."""
        return [r.std for r in self.responses]

    def summary(self) -> dict[str, Any]:
        """Mean, median, max and min std over the layers (what the comparison table shows)."""
        stds = [s for s in self.stds if math.isfinite(s)]
        return {
            "label": self.label,
            "run_id": self.run_id,
            "checkpoint": self.checkpoint,
            "layers": len(self.responses),
            "images": self.images,
            "mean_std": statistics.fmean(stds) if stds else math.nan,
            "median_std": statistics.median(stds) if stds else math.nan,
            "max_std": max(stds, default=math.nan),
            "min_std": min(stds, default=math.nan),
        }


def responses_csv(responses: Sequence[LayerResponse]) -> str:
    """One row per 3x3 layer in forward order; `sorted_rank` is its place in descending std."""
    order = sorted(range(len(responses)), key=lambda i: -responses[i].std)
    rank = {index: position for position, index in enumerate(order, 1)}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for position, r in enumerate(responses):
        writer.writerow(
            [
                r.index,
                rank[position],
                r.conv,
                r.norm,
                r.channels,
                f"{r.std:.6g}",
                f"{r.mean:.6g}",
                r.count,
            ]
        )
    return buffer.getvalue()


def compare_csv(runs: Sequence[RunResponses]) -> str:
    """All runs in one long table: label and run id, then the per-layer columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("label", "run_id", *CSV_COLUMNS))
    for run in runs:
        rows = list(csv.reader(io.StringIO(responses_csv(run.responses))))[1:]
        for row in rows:
            writer.writerow((run.label, run.run_id or "", *row))
    return buffer.getvalue()


def unique_labels(labels: Iterable[str]) -> list[str]:
    """Labels made unique with a counter (two runs of ResNet-20 stay two lines)."""
    seen: dict[str, int] = {}
    unique = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        unique.append(label if seen[label] == 1 else f"{label} #{seen[label]}")
    return unique


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


def validation_batches(spec: JobSpec, batch_size: int) -> Iterator[Any]:
    """The spec's validation images, centre-cropped and normalised as in training's validation."""
    from resnetctl.data import DataError, build_loader, prepare_dataset

    try:
        layout = prepare_dataset(spec.data)
    except DataError as exc:
        raise AnalysisError(f"validation data of {spec.name}: {exc}") from None
    loader = build_loader(spec.data, layout, split="val", batch_size=batch_size, device="cpu")
    yield from loader


def measure(
    trained: TrainedModel,
    *,
    batches: Iterable[Any] | None = None,
    max_images: int | None = None,
    batch_size: int = 128,
    on_images: Callable[[int], None] | None = None,
) -> RunResponses:
    """The layer responses of a trained network on its run's validation split (or `batches`);
    `on_images(n)` follows each batch of n images."""
    if batches is None:
        if trained.spec is None:
            raise AnalysisError(
                f"{trained.label}: no spec to find its validation data; pass --spec"
            )
        batches = validation_batches(trained.spec, batch_size)
    responses = layer_responses(trained.model, batches, max_images=max_images, on_images=on_images)
    return RunResponses(
        label=trained.label,
        responses=responses,
        run_id=trained.run_id,
        tracking_uri=trained.tracking_uri,
        checkpoint=str(trained.checkpoint),
        images=responses[0].images,
    )


def write_report(
    runs: Sequence[RunResponses], out_dir: Path, *, log: bool = True, title: str | None = None
) -> list[Path]:
    """Per run: CSV and plot under `out_dir/<label>/`, logged to its MLflow run as
    `analysis/layer_responses.{csv,png}`; for several runs also the overlay and the long table,
    written to `out_dir` and logged to every run as `analysis/layer_responses_compare.*`."""
    labels = unique_labels(r.label for r in runs)
    for run, label in zip(runs, labels, strict=True):
        run.label = label
    written: list[Path] = []
    for run in runs:
        folder = out_dir / _slug(run.label)
        folder.mkdir(parents=True, exist_ok=True)
        table = folder / CSV_NAME
        table.write_text(responses_csv(run.responses), encoding="utf-8")
        plot = plot_layer_responses({run.label: run.stds}, folder / PLOT_NAME, title=title)
        run.files = [table, plot]
        written += run.files
    shared: list[Path] = []
    if len(runs) > 1:
        out_dir.mkdir(parents=True, exist_ok=True)
        table = out_dir / COMPARE_CSV
        table.write_text(compare_csv(runs), encoding="utf-8")
        plot = plot_layer_responses(
            {r.label: r.stds for r in runs}, out_dir / COMPARE_PLOT, title=title
        )
        shared = [table, plot]
        written += shared
    if log:
        for run in runs:
            if run.run_id and run.tracking_uri:
                log_files(run.tracking_uri, run.run_id, [*run.files, *shared])
                run.logged = [f"{ARTIFACT_DIR}/{p.name}" for p in [*run.files, *shared]]
    return written


def log_files(
    uri: str, run_id: str, files: Sequence[Path], artifact_dir: str = ARTIFACT_DIR
) -> None:
    """Log files to an MLflow run (also a finished one) under `artifact_dir`."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for path in files:
        client.log_artifact(run_id, str(path), artifact_dir)


def summary_markdown(runs: Sequence[RunResponses]) -> str:
    """A markdown table of each run's std statistics (for docs and the terminal)."""
    lines = [
        "| net | 3x3 layers | images | mean std | median std | max std | min std |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        s = run.summary()
        lines.append(
            f"| {s['label']} | {s['layers']} | {s['images']} | {s['mean_std']:.3f} | "
            f"{s['median_std']:.3f} | {s['max_std']:.3f} | {s['min_std']:.3f} |"
        )
    return "\n".join(lines) + "\n"
