"""`resnetctl ui`: the MLflow UI on the job store, bound to loopback, opened at the experiment
of the last run.

MLflow 3.17's server starts a job runner and its queue consumers by default (used by GenAI
features: scorers, trace rollups), 12 processes for nothing a review reads; with
`MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false` it is the web server alone, and still serves runs,
datasets, logged models and the Model Registry (measured: docs/benchmarks.md, "MLflow UI")."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Annotated

import typer

from resnetctl.cli.common import err, fail, print_json

#: Environment that makes `mlflow server` serve the review and nothing else.
LIGHT_SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def server_command(store: str, port: int) -> list[str]:
    """The `mlflow server` command line serving `store` on 127.0.0.1:`port`."""
    return [
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


def last_experiment(store: str) -> tuple[str, bool] | None:
    """The id of the experiment of the most recently started run in `store`, and whether it
    holds resnetctl's runs-table view; None when there is no run or the store cannot be read
    (the UI then opens at its start page)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from resnetctl.tracking.experiment import VIEW_TAG

    try:
        client = MlflowClient(store)
        experiments = {e.experiment_id: e for e in client.search_experiments()}
        if not experiments:
            return None
        runs = client.search_runs(
            list(experiments), order_by=["attributes.start_time DESC"], max_results=1
        )
    except (MlflowException, OSError):
        return None
    if not runs:
        return None
    experiment = experiments[runs[0].info.experiment_id]  # with its tags, already fetched
    return experiment.experiment_id, VIEW_TAG in (experiment.tags or {})


#: The MLflow UI's view for model training runs (runs, models, traces), as its URL names it.
TRAINING_VIEW = "machine_learning"


def ui_url(port: int, experiment: tuple[str, bool] | None) -> str:
    """Where the browser opens: the experiment's runs (in resnetctl's runs-table view when the
    experiment has it), or the UI's start page, in the UI's "Model training" view (MLflow 3
    opens in its GenAI view unless the URL asks otherwise)."""
    from resnetctl.tracking.experiment import VIEW_KEY

    base = f"http://127.0.0.1:{port}"
    view = f"?workflowType={TRAINING_VIEW}"
    if experiment is None:
        return f"{base}/#/{view}"
    experiment_id, has_view = experiment
    if not has_view:
        return f"{base}/#/experiments/{experiment_id}{view}"
    # On the runs tab itself: the experiment's root redirects there and drops the view.
    return f"{base}/#/experiments/{experiment_id}/runs{view}&viewStateShareKey={VIEW_KEY}"


def ui(
    port: Annotated[
        int, typer.Option(min=1, max=65535, metavar="PORT", help="Port on 127.0.0.1.")
    ] = 5000,
    uri: Annotated[
        str | None,
        typer.Option(
            "--uri",
            envvar="MLFLOW_TRACKING_URI",
            metavar="URI",
            help="Tracking store; default: the sqlite store `resnetctl submit` writes here.",
        ),
    ] = None,
    json_: Annotated[
        bool,
        typer.Option(
            "--json", help='Print {"url": ..., "store": ..., "port": ...} on stdout, then serve.'
        ),
    ] = False,
) -> None:
    """Serve the MLflow UI of this folder's runs on 127.0.0.1.

    It opens at the last run's experiment, and prints that URL (on stdout, for a script), then
    serves until Ctrl-C. It listens on loopback only: reach it from elsewhere through an SSH tunnel
    (ssh -L 5000:127.0.0.1:5000 host), never by binding a public address.

    Example: resnetctl ui --port 5001  # serves until Ctrl-C

    Exit codes: 0 stopped with Ctrl-C, 2 the store is a server already, or the port is taken;
    the server's own exit code otherwise.
    """
    from resnetctl.tracking.store import default_store_uri

    store = uri or default_store_uri()
    _check_scheme(store)
    if store.startswith(("http://", "https://")):
        fail(f"{store} is already a tracking server: open it in a browser")
    if not _port_free(port):
        fail(f"port {port} on 127.0.0.1 is taken (another `resnetctl ui`?): pass --port N")
    url = ui_url(port, last_experiment(store))
    err.print(f"MLflow UI for {store} (Ctrl-C stops it)", highlight=False)
    # On stdout alone, so that a script can take the address.
    if json_:
        print_json({"url": url, "store": store, "port": port})
    else:
        print(url, flush=True)
    try:
        code = subprocess.call(server_command(store, port), env={**os.environ, **LIGHT_SERVER_ENV})
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code)


def _check_scheme(store: str) -> None:
    """Exit 2 for a store URI of a kind MLflow cannot serve, as a spec's tracking.uri would."""
    from pydantic import ValidationError

    from resnetctl.spec.tracking import TrackingSpec

    try:
        TrackingSpec(uri=store)
    except ValidationError as exc:
        fail(f"--uri: {exc.errors()[0]['msg'].removeprefix('Value error, ')}")


def _port_free(port: int) -> bool:
    """Whether 127.0.0.1:`port` can be listened on now (as a server binds it)."""
    import socket

    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
