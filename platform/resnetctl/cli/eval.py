"""`resnetctl eval MODEL`: top-1/top-5 error under the paper's test protocols, as a Ray job."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from resnetctl.cli._model_arg import AllowPickleOption, ModelArg, TrackingOption, load
from resnetctl.cli.common import (
    EXIT_JOB_FAILED,
    BatchSizeOption,
    JsonOption,
    err,
    fail,
    out,
    print_json,
)

EvalAddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        metavar="HOST:PORT",
        help="Run on this Ray cluster, joining it as its driver (the GCS address, HOST:6379, "
        "or `auto` on a node of it); default: an embedded local Ray.",
    ),
]


def eval_(
    model: ModelArg,
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            "--protocol",
            "-p",
            metavar="[center|ten_crop|multi_scale]",
            help="A test protocol (repeatable; default: all three).",
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="PATH",
            help="An image folder with val/, or a folder of class folders (default: the run's "
            "own validation data). Results on other data are not logged to the run. On a "
            "cluster, every node reads it at this path.",
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            metavar="N",
            help="Ray workers, each evaluating its share of the images (default: one per GPU, "
            "else one per --cpus-per-worker CPUs of this machine; on a cluster, the workers "
            "the run trained with).",
        ),
    ] = None,
    cpus_per_worker: Annotated[
        float,
        typer.Option("--cpus-per-worker", min=0.01, max=256, metavar="N", help="CPUs per worker."),
    ] = 1.0,
    batch_size: BatchSizeOption = 32,
    address: EvalAddressOption = None,
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log eval_* metrics to the model's MLflow run.")
    ] = True,
    tracking_uri: TrackingOption = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print what Ray and the workers log.")
    ] = False,
    allow_pickle: AllowPickleOption = False,
    json_: JsonOption = False,
) -> None:
    """Top-1/top-5 error of a model under the paper's test protocols.

    `center` (the run's own validation input), `ten_crop` (section 3.4: corners and centre,
    and their mirrors) and `multi_scale` (Table 4: whole images at shorter sides
    224/256/384/480/640, scores averaged). Smaller networks use the same geometry scaled by
    their crop / 224.

    It runs as a Ray job (an embedded local Ray, or the cluster at --address): the images are
    split over the workers, each image evaluated once, on GPUs when the cluster has them.

    Exit codes: 0 done, 1 a worker failed, 2 bad input (model, data, protocol, resources),
    130 interrupted.

    Examples:

      resnetctl eval quickstart-20261203-075655  # needs: a run

      resnetctl eval .resnetctl/runs/quickstart-20261203-075655 -p ten_crop --json  # needs: a run

      resnetctl eval models:/quickstart@best -p multi_scale --workers 2  # needs: a run
    """
    from resnetctl.data import DataError
    from resnetctl.inference.evaluate import PROTOCOLS, check_protocols, eval_inputs

    protocols = list(dict.fromkeys(protocol or PROTOCOLS))
    try:
        check_protocols(protocols)
    except ValueError as exc:
        fail(str(exc))
    if address:
        _check_address(address)
    loaded = load(model, tracking_uri, allow_pickle)
    try:
        spec, layout, mapping = eval_inputs(loaded, protocols, data)
    except (DataError, ValueError) as exc:
        fail(str(exc))
    job = _job(model, loaded, tracking_uri, spec, protocols, mapping, batch_size, data)
    job = dataclasses.replace(job, allow_pickle=allow_pickle)
    outcome = _run(job, layout.val_files, address, workers, cpus_per_worker, json_, verbose)
    from resnetctl.inference.evaluate import log_results

    logged = log and data is None and log_results(loaded, outcome.results)
    if json_:
        print_json(
            {
                "model": model,
                "origin": loaded.origin,
                "run_id": loaded.run_id,
                "data": str(layout.val_dir),
                "logged": logged,
                "workers": outcome.workers,
                "nodes": outcome.nodes,
                "device": outcome.device,
                "startup_seconds": outcome.startup_seconds,
                "results": [
                    {
                        **r.as_dict(),
                        "seconds": outcome.seconds[r.protocol],
                        "cpu_seconds": outcome.cpu_seconds[r.protocol],
                        "images_per_second": outcome.images_per_second(r.protocol),
                    }
                    for r in outcome.results
                ],
            }
        )
    else:
        _table(model, layout, outcome)
    if logged:
        err.print(f"logged eval_* metrics to MLflow run {loaded.run_id}", highlight=False)


def _check_address(address: str) -> None:
    """Exit 2 with one line when `address` cannot be joined (before loading anything)."""
    from resnetctl.launch.auth import ClusterAccessError, check_gcs_access

    if address.startswith(("http://", "https://")):
        fail(
            f"--address {address}: eval joins the cluster as its driver, through the GCS "
            "address (HOST:6379, or `auto` on a node of the cluster), not the Jobs API; run "
            "it on the head node, or from a machine that reaches every node"
        )
    try:
        check_gcs_access(address)
    except ClusterAccessError as exc:
        fail(str(exc))
    os.environ["RAY_ADDRESS"] = address


def _job(
    target: str,
    loaded: Any,
    tracking_uri: str | None,
    spec: Any,
    protocols: list[str],
    mapping: Any,
    batch_size: int,
    data: Path | None,
) -> Any:
    """What the workers get: a checkpoint's network travels through Ray's object store; a
    logged model (an exported program, which does not pickle) is loaded by each worker from
    MLflow, pinned to the version the driver resolved."""
    from resnetctl.inference.source import default_tracking_uri
    from resnetctl.launch.evaluation import EvalJob, absolute_store, pinned_model_uri

    common = {
        "spec": spec,
        "protocols": tuple(protocols),
        "mapping": tuple(int(i) for i in mapping.tolist()),
        "batch_size": batch_size,
        "data_path": str(data.expanduser().resolve()) if data is not None else None,
    }
    if loaded.checkpoint is not None:
        return EvalJob(model=loaded.model, **common)
    uri = absolute_store(tracking_uri or loaded.tracking_uri or default_tracking_uri())
    assert uri is not None
    return EvalJob(model_uri=pinned_model_uri(target, uri), tracking_uri=uri, **common)


def _run(
    job: Any,
    images: int,
    address: str | None,
    workers: int | None,
    cpus_per_worker: float,
    json_: bool,
    verbose: bool,
) -> Any:
    """The job, with what Ray and the workers print kept out of the terminal (as `submit`
    does): in memory, shown when the job fails, or printed as it comes with --verbose."""
    from rich.console import Console
    from rich.text import Text

    from resnetctl.cli.image_progress import ImageBars
    from resnetctl.cli.interrupt import stop_on_signals
    from resnetctl.launch.evaluation import EvalFailed, EvalLaunchError, run_eval
    from resnetctl.launch.joblog import JobLog

    # Bound to stderr now: the log takes sys.stderr over while the job runs.
    console = Console(file=sys.stderr, soft_wrap=True)

    def echo(line: str) -> None:
        console.print(Text.from_ansi(line), highlight=False, soft_wrap=True)

    log = JobLog(echo=echo if verbose else None)
    with stop_on_signals() as interruption:
        try:
            # With --json a program reads the output: no bar, as `submit --json`.
            with log, ImageBars(console, enabled=not json_) as bars:
                return run_eval(
                    job,
                    images=images,
                    address=address,
                    workers=workers,
                    cpus_per_worker=cpus_per_worker,
                    progress=lambda protocol, done: bars.update(protocol, done, images),
                    stage=bars.status,
                )
        except EvalLaunchError as exc:
            fail(str(exc))
        except EvalFailed as exc:
            if not verbose:
                log.show_tail(console)
            fail(str(exc), EXIT_JOB_FAILED)
        except KeyboardInterrupt:
            err.print("[bold yellow]interrupted:[/] nothing was logged", highlight=False)
            raise typer.Exit(interruption.exit_code) from None


def _table(model: str, layout: Any, outcome: Any) -> None:
    table = Table(
        title=f"{escape(model)} on {escape(str(layout.val_dir))}",
        caption=f"{outcome.workers} {outcome.device.upper()} worker"
        f"{'s' if outcome.workers > 1 else ''}"
        + (f" on {outcome.nodes} nodes" if outcome.nodes > 1 else "")
        + f", {outcome.startup_seconds:.1f} s to start",
    )
    columns = ("protocol", "top-1 err %", "top-5 err %", "loss", "images", "img/s", "views")
    for column in columns:
        table.add_column(column, justify="left" if column in ("protocol", "views") else "right")
    for r in outcome.results:
        table.add_row(
            r.protocol,
            f"{r.top1_error:.2f}",
            f"{r.top5_error:.2f}",
            f"{r.loss:.4f}",
            str(r.images),
            f"{outcome.images_per_second(r.protocol):,.1f}",
            escape(r.views),
        )
    out.print(table)
