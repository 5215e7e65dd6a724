"""`resnetctl status|logs|stop|list`: jobs on a Ray cluster, over the Ray Jobs API."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from resnetctl.cli.common import EXIT_JOB_FAILED, JsonOption, fail, out, print_json

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        help="Ray dashboard address of the cluster, e.g. http://127.0.0.1:8265.",
    ),
]
JobId = Annotated[str, typer.Argument(metavar="JOB_ID", help="Submission id printed by submit.")]


def _address(address: str | None) -> str:
    if not address:
        fail("no cluster address: pass --address http://HEAD:8265 or set RAY_ADDRESS")
    return address


def status(job_id: JobId, address: AddressOption = None, json_: JsonOption = False) -> None:
    """Show a job's state (PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED).

    Example: resnetctl status quickstart-20261122-080000 --address http://127.0.0.1:8265
    """
    from resnetctl.launch.remote import RemoteError, info

    try:
        job = info(_address(address), job_id)
    except RemoteError as exc:
        fail(str(exc))
    if json_:
        print_json(job.as_dict())
    else:
        out.print(
            f"{job.job_id}: {job.state}" + (f" ({job.message})" if job.message else ""),
            highlight=False,
        )


def logs(
    job_id: JobId,
    address: AddressOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
) -> None:
    """Print a job's logs; --follow streams them until the job ends.

    Example: resnetctl logs quickstart-20261122-080000 -f
    """
    from resnetctl.launch.remote import RemoteError
    from resnetctl.launch.remote import logs as job_logs

    try:
        job_logs(_address(address), job_id, follow=follow, out=sys.stdout)
    except RemoteError as exc:
        fail(str(exc))


def stop(job_id: JobId, address: AddressOption = None, json_: JsonOption = False) -> None:
    """Stop a running job and wait until it has ended.

    Example: resnetctl stop quickstart-20261122-080000
    """
    from resnetctl.launch.remote import RemoteError
    from resnetctl.launch.remote import stop as stop_job

    try:
        job = stop_job(_address(address), job_id)
    except RemoteError as exc:
        fail(str(exc))
    if json_:
        print_json(job.as_dict())
    else:
        out.print(f"{job.job_id}: {job.state}", highlight=False)


def list_(
    address: AddressOption = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Without --address: list the runs recorded here (a path or s3://bucket/runs; "
            "default $RESNETCTL_STORAGE, else .resnetctl/runs).",
        ),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """List resnetctl jobs on the cluster (id, spec, state, start, duration, MLflow run), or
    without --address the runs in run storage (name, job, last checkpoint, MLflow run).

    Examples:

      resnetctl list --address http://127.0.0.1:8265 --json

      resnetctl list --storage s3://bucket/runs
    """
    if not address:
        _list_stored(storage, json_)
        return
    from resnetctl.launch.remote import RemoteError, list_jobs
    from resnetctl.tracking.lookup import run_for_job

    try:
        jobs = list_jobs(_address(address))
    except RemoteError as exc:
        fail(str(exc))
    rows = [
        {**job.as_dict(), "mlflow_run": run_for_job(job.mlflow_uri, job.job_id)} for job in jobs
    ]
    if json_:
        print_json(rows)
        return
    table = Table(title="resnetctl jobs")
    for column in ("job id", "spec", "state", "started", "duration", "mlflow run"):
        table.add_column(column, no_wrap=column == "job id")
    for row in rows:
        started = row["start_time"]
        table.add_row(
            row["job_id"],
            row["spec"],
            row["state"],
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "-",
            f"{row['duration_s']:.0f} s" if row["duration_s"] is not None else "-",
            row["mlflow_run"] or "-",
        )
    out.print(table)


def _list_stored(storage: str | None, json_: bool) -> None:
    from resnetctl.storage import StorageError, checkpoints, list_runs, storage_root
    from resnetctl.storage.checkpoints import progress_key

    try:
        root = storage_root(storage)
        rows = []
        for record in list_runs(root):
            # Complete checkpoints only: a warning names each incomplete one.
            metas = [meta for meta, _ in checkpoints(root / record.run_name)]
            last = max(metas, key=progress_key, default=None)
            rows.append(
                {
                    "run": record.run_name,
                    "job": record.job,
                    # Epochs finished at the last checkpoint, and its optimiser step (from the
                    # middle of the next epoch when `position` says so).
                    "last_checkpoint_epoch": None if last is None else last["epoch"],
                    "last_checkpoint_step": None if last is None else last.get("step"),
                    "mlflow_run": record.mlflow_run_id,
                    "mlflow_uri": record.mlflow_uri,
                }
            )
    except StorageError as exc:
        fail(f"storage: {exc}")
    if json_:
        print_json(rows)
        return
    table = Table(title=f"resnetctl runs in {root}")
    for column in ("run", "job", "last checkpoint", "mlflow run"):
        table.add_column(column, no_wrap=column == "run")
    for row in rows:
        epoch, step = row["last_checkpoint_epoch"], row["last_checkpoint_step"]
        last = "-" if epoch is None else f"epoch {epoch}" + (f", step {step}" if step else "")
        table.add_row(row["run"], row["job"], last, row["mlflow_run"])
    out.print(table)


def exit_for_state(state: str) -> None:
    """Exit 1 unless the job succeeded."""
    if state != "SUCCEEDED":
        raise typer.Exit(EXIT_JOB_FAILED)
