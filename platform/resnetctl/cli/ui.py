"""`resnetctl ui`: the MLflow UI on the job store, bound to loopback."""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from resnetctl.cli.common import err, fail


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 5000,
    uri: Annotated[
        str | None,
        typer.Option(
            "--uri",
            envvar="MLFLOW_TRACKING_URI",
            help="Tracking store; default: the sqlite store `resnetctl submit` writes here.",
        ),
    ] = None,
) -> None:
    """Serve the MLflow UI for this directory's runs on http://127.0.0.1:PORT.

    It listens on loopback only: reach it from elsewhere through an SSH tunnel
    (ssh -L 5000:127.0.0.1:5000 host), never by binding a public address.

    Example: resnetctl ui --port 5001
    """
    from resnetctl.tracking.store import default_store_uri

    store = uri or default_store_uri()
    if store.startswith(("http://", "https://")):
        fail(f"{store} is already a tracking server: open it in a browser")
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    err.print(
        f"MLflow UI for {store} on http://127.0.0.1:{port} (Ctrl-C stops it)", highlight=False
    )
    try:
        code = subprocess.call(command)
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)
