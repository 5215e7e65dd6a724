"""`resnetctl eval MODEL`: top-1/top-5 error under the paper's test protocols."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from resnetctl.cli._model_arg import AllowPickleOption, ModelArg, TrackingOption, load
from resnetctl.cli.common import JsonOption, err, fail, out, print_json


def eval_(
    model: ModelArg,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            "--protocol",
            "-p",
            help="center, ten_crop or multi_scale (repeatable; default: all three).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="An image folder with val/, or a folder of class folders (default: the run's "
            "own validation data). Results on other data are not logged to the run.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log eval_* metrics to the model's MLflow run.")
    ] = True,
    tracking_uri: TrackingOption = None,
    allow_pickle: AllowPickleOption = False,
    json_: JsonOption = False,
) -> None:
    """Top-1 and top-5 error of a trained model with the paper's test protocols: `center`
    (the run's own validation input), `ten_crop` (section 3.4: corners and centre, and their
    mirrors) and `multi_scale` (Table 4: whole images at shorter sides 224/256/384/480/640,
    scores averaged). Smaller networks use the same geometry scaled by their crop / 224.

    Examples:

      resnetctl eval quickstart-20261202-183000

      resnetctl eval .resnetctl/runs/quickstart-20261202-183000 -p ten_crop --json
    """
    from resnetctl.data import DataError
    from resnetctl.inference.evaluate import PROTOCOLS, evaluate, log_results

    protocols = protocol or list(PROTOCOLS)
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        fail(f"unknown protocol {unknown[0]!r}; use {', '.join(PROTOCOLS)}")
    loaded = load(model, tracking_uri, allow_pickle)
    try:
        results, layout = evaluate(loaded, protocols, data_path=data, batch_size=batch_size)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    logged = log and data is None and log_results(loaded, results)
    if json_:
        print_json(
            {
                "model": model,
                "origin": loaded.origin,
                "run_id": loaded.run_id,
                "data": str(layout.val_dir),
                "logged": logged,
                "results": [r.as_dict() for r in results],
            }
        )
    else:
        table = Table(title=f"{model} on {layout.val_dir}")
        for column in ("protocol", "top-1 err %", "top-5 err %", "loss", "images", "views"):
            table.add_column(column, justify="left" if column in ("protocol", "views") else "right")
        for r in results:
            table.add_row(
                r.protocol,
                f"{r.top1_error:.2f}",
                f"{r.top5_error:.2f}",
                f"{r.loss:.4f}",
                str(r.images),
                escape(r.views),
            )
        out.print(table)
    if logged:
        err.print(f"logged eval_* metrics to MLflow run {loaded.run_id}", highlight=False)
