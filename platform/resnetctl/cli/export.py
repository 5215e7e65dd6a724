"""`resnetctl export MODEL --format torchscript|onnx|pt2`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from resnetctl.cli._model_arg import AllowPickleOption, ModelArg, TrackingOption, load
from resnetctl.cli.common import JsonOption, err, fail, print_json


def export(
    model: ModelArg,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", metavar="[torchscript|onnx|pt2]", help="Output format."),
    ] = "torchscript",
    output: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", metavar="FILE", help="Default: model.pt, model.onnx or model.pt2."
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check/--no-check",
            help="Compare the export's logits with the checkpoint's on a random batch.",
        ),
    ] = True,
    tracking_uri: TrackingOption = None,
    allow_pickle: AllowPickleOption = False,
    json_: JsonOption = False,
) -> None:
    """Write a network as TorchScript, ONNX or a torch.export program.

    The export has a dynamic batch dimension. ONNX needs `pip install 'resnetctl[export]'`
    (onnx, onnxruntime).

    Examples:

      resnetctl export quickstart-20261203-075655 --format onnx -o quickstart.onnx  # needs: a run

    Exit codes: 0 written (and checked), 2 an unknown model or format, or a failed export.
    """
    from resnetctl.inference.export import (
        EXAMPLE_BATCH,
        FORMATS,
        SUFFIX,
        ExportError,
        example_input,
        export_model,
        max_abs_difference,
    )
    from resnetctl.inference.preprocess import test_crop

    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    loaded = load(model, tracking_uri, allow_pickle)
    if loaded.spec is None:
        fail(f"{model}: no spec found, so the input size is unknown")
    size = test_crop(loaded.spec.pipeline)
    channels = int(loaded.model.state_dict()["conv1.weight"].shape[1])
    path = output or Path(f"model{SUFFIX[fmt]}")
    try:
        export_model(loaded.model, fmt, path, example_input(channels, size))
        difference = None
        if check:
            batch = example_input(channels, size, batch=EXAMPLE_BATCH + 3)
            difference = max_abs_difference(loaded.model, fmt, path, batch)
    except ExportError as exc:
        fail(str(exc))
    if json_:
        print_json(
            {
                "model": model,
                "format": fmt,
                "path": str(path),
                "input": [None, channels, size, size],
                "max_abs_difference": difference,
                "classes": list(loaded.classes or ()),
            }
        )
        return
    err.print(f"wrote {escape(str(path))} ({fmt}, input N x {channels} x {size} x {size})")
    if difference is not None:
        err.print(f"logits differ from the checkpoint's by at most {difference:.2e}")
