"""`resnetctl analyze RUN...`: the paper's Fig. 7 for trained runs — the std of every 3x3
layer's response after BN and before the nonlinearity, on validation data."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from resnetctl.cli.common import (
    BatchSizeOption,
    JsonOption,
    StorageOption,
    err,
    fail,
    out,
    print_json,
    spec_errors,
    use_storage,
)
from resnetctl.cli.image_progress import ImageBars

RunsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="RUN...",
        help="MLflow run ids (with a checkpoints/best artifact, or whose checkpoints are "
        "still under the storage root), run or trial names under the storage root, or "
        "checkpoint directories. Several runs are overlaid in one figure.",
        show_default=False,
    ),
]

TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        metavar="URI",
        help="MLflow store of the runs (default: sqlite:///./mlflow.db).",
    ),
]

SpecOption = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        metavar="FILE",
        help="Job spec for checkpoints with no MLflow run: its model options and its "
        "validation data are used.",
    ),
]

MaxImagesOption = Annotated[
    int | None,
    typer.Option(
        "--max-images", min=1, metavar="N", help="Measure on at most N validation images."
    ),
]

OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out",
        metavar="DIR",
        help="Where to write CSV and PNG files (default: ./layer-responses-TIME, in UTC).",
    ),
]

LogOption = Annotated[
    bool, typer.Option("--log/--no-log", help="Log the files to each run in MLflow.")
]


def analyze(
    runs: RunsArgument,
    tracking_uri: TrackingUriOption = None,
    spec_file: SpecOption = None,
    max_images: MaxImagesOption = None,
    batch_size: BatchSizeOption = 128,
    out_dir: OutOption = None,
    log: LogOption = True,
    storage: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Fig. 7 of trained runs: the std of each 3x3 layer's response.

    The response is measured after BN and before ReLU (or the shortcut's addition) on the run's
    validation split, in layer order and sorted; one CSV and PNG per run and, for several runs,
    an overlay, written to --out and logged to each MLflow run under `analysis/`.

    Examples:

      resnetctl analyze quickstart-20261203-075655  # needs: a run

      resnetctl analyze RUN_PLAIN20 RUN_PLAIN56 RUN_RESNET20 RUN_RESNET56 --out fig7  # needs: runs

      resnetctl analyze .resnetctl/runs/quickstart-20261203-075655  # needs: a run

      resnetctl analyze quickstart-20261203-075655 --storage s3://bucket/runs  # needs: a bucket

    Exit codes: 0 measured, 2 an unknown run, spec or option.
    """
    use_storage(storage)
    from resnetctl.analysis import AnalysisError, load_trained, measure, write_report
    from resnetctl.analysis.report import summary_markdown

    spec = None
    if spec_file is not None:
        from resnetctl.spec import load_spec

        with spec_errors():
            spec = load_spec(spec_file)
    folder = out_dir or Path(f"layer-responses-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}")
    results = []
    try:
        # A bar per run, on a terminal only (none with --json, as `eval`).
        with ImageBars(err, enabled=not json_) as bars:
            for target in runs:
                trained = load_trained(target, tracking_uri=tracking_uri, spec=spec)
                err.print(
                    f"{escape(target)}: {escape(trained.label)} from "
                    f"{escape(str(trained.checkpoint))}"
                    + (f" (epoch {trained.epoch})" if trained.epoch is not None else ""),
                    highlight=False,
                )
                advance = bars.counter(trained.label, _images(trained.spec, max_images))
                results.append(
                    measure(
                        trained, max_images=max_images, batch_size=batch_size, on_images=advance
                    )
                )
    except AnalysisError as exc:
        fail(str(exc))
    files = write_report(results, folder, log=log, title="std of 3x3 layer responses")
    if json_:
        print_json(_as_json(results, files))
    else:
        out.print(summary_markdown(results), highlight=False, markup=False)
    for result in results:
        if log and not result.logged:
            err.print(f"{escape(result.label)}: no MLflow run, files written only", highlight=False)
    err.print(f"wrote {len(files)} files to {escape(str(folder))}", highlight=False)


def _images(spec, max_images: int | None) -> int | None:  # type: ignore[no-untyped-def]
    """How many images a run's measurement reads: its validation split (a cached scan), at
    most `--max-images`; None when unknown (the bar then counts without a total)."""
    from resnetctl.data import DataError, prepare_dataset

    try:
        total = prepare_dataset(spec.data).val_files if spec is not None else None
    except (DataError, OSError):
        total = None
    if max_images is not None:
        return min(total, max_images) if total is not None else max_images
    return total


def _as_json(results: list, files: list[Path]) -> dict:
    """What `analyze --json` prints: each run's summary, its stds and layers, the files."""
    runs = [
        {
            **r.summary(),
            "stds": r.stds,
            "logged": r.logged,
            "layers": [x.as_dict() for x in r.responses],
        }
        for r in results
    ]
    return {"runs": runs, "files": [str(p) for p in files]}
