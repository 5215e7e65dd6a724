"""The MODEL argument that `eval`, `export` and `predict` share, and how it is loaded."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from resnetctl.cli.common import err, fail

ModelArg = Annotated[
    str,
    typer.Argument(
        metavar="MODEL",
        help="A run name under the storage root ($RESNETCTL_STORAGE, default .resnetctl/runs; "
        "its best checkpoint), a run or checkpoint directory or its bucket URI (s3://, gs://), "
        "or an MLflow model URI "
        "(models:/NAME@alias, models:/m-..., runs:/ID/model).",
        show_default=False,
    ),
]
TrackingOption = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        envvar="MLFLOW_TRACKING_URI",
        metavar="URI",
        help="MLflow store for models:/ URIs (default: sqlite:///./mlflow.db; a run's own "
        "store is taken from its record).",
    ),
]

AllowPickleOption = Annotated[
    bool,
    typer.Option(
        "--allow-pickle",
        help="Load an MLflow model stored with Python's pickle (logged by another tool): "
        "unpickling runs code from the file, so only for a source you trust. resnetctl's own "
        "models (pt2) need no flag.",
    ),
]


def load(target: str, tracking_uri: str | None, allow_pickle: bool = False) -> Any:
    """`load_model`, or exit 2 with what was looked for."""
    from resnetctl.inference.source import ModelSourceError, load_model

    try:
        loaded = load_model(target, tracking_uri=tracking_uri, allow_pickle=allow_pickle)
    except (ModelSourceError, FileNotFoundError) as exc:
        fail(str(exc))
    epoch = f" (epoch {loaded.epoch})" if loaded.epoch is not None else ""
    origin = loaded.origin
    if origin == target and loaded.run_id:  # a logged model's URI: its run says more
        origin = f"logged by MLflow run {loaded.run_id}"
    err.print(f"{escape(target)}: {escape(origin)}{epoch}", highlight=False)
    return loaded
