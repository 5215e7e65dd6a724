"""`resnetctl status|logs|stop|list`: a run of the run storage (started here, on the embedded
Ray or a cluster this machine joined) by its name, or a job on a Ray cluster (`--address`) by
its id; the same commands and the same `--json` for both."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass, fields
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from resnetctl.cli.common import (
    EXIT_JOB_FAILED,
    JsonOption,
    StorageOption,
    err,
    fail,
    out,
    print_json,
)

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        metavar="URL",
        help="Ray dashboard address of a cluster, e.g. http://127.0.0.1:8265: RUN is then a "
        "job id there (a local run of that name is used when the cluster has no such job).",
    ),
]
RunArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="A run name of the run storage (`resnetctl list` names them), or the job id "
        "`submit --address` printed.",
        show_default=False,
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option(
        "--timeout",
        metavar="SECONDS",
        min=0,
        help="How long to wait for the run to end after the signal.",
    ),
]


@dataclass
class Target:
    """What RUN names: a local run (`run`) or a job on the cluster at `address`."""

    name: str
    run: Any = None  # launch.runstate.StoredRun
    address: str | None = None


def _target(name: str, address: str | None, storage: str | None) -> Target:
    """Find RUN: on the cluster when an http(s) address is given and it has such a job, else
    in the run storage. Exit 2 naming where it looked."""
    from resnetctl.launch.runstate import find_run, known_runs
    from resnetctl.storage import StorageError, storage_root

    remote_error = None
    if address and address.startswith(("http://", "https://")):
        from resnetctl.launch.remote import RemoteError, info

        try:
            info(address, name)
            return Target(name, address=address)
        except RemoteError as exc:
            remote_error = str(exc)
    try:
        root = storage_root(storage)
        found = find_run(name, root)
    except StorageError as exc:
        fail(f"storage: {exc}")
    if found is not None:
        return Target(name, run=found)
    if remote_error is not None:
        fail(f"{remote_error}; and no run {name!r} under {root}")
    known = known_runs(root)
    hint = f" (newest: {', '.join(known)})" if known else ""
    fail(
        f"no run {name!r} under {root}{hint}; for a job on a cluster pass --address "
        "http://HEAD:8265 (or set RAY_ADDRESS)"
    )


def null_summary(run_name: str) -> dict[str, Any]:
    """The keys of a run summary, unknown, for a job that ended before its run had one."""
    from resnetctl.launch.outcome import RunSummary

    return {**{f.name: None for f in fields(RunSummary)}, "succeeded": False, "run_name": run_name}


def job_report(address: str, job_id: str) -> dict[str, Any]:
    """A cluster job as `status --json` prints it: the same keys as a local run's, the job's
    record under `job`, and once it has ended the run summary its driver printed. A job that
    failed because the cluster's `python` lacks a dependency says so in `message`."""
    from resnetctl.launch.remote import TERMINAL, info, log_text, missing_dependency, summary_in

    job = info(address, job_id)
    text = log_text(address, job_id) if job.state in TERMINAL else ""
    summary = summary_in(text)
    hint = missing_dependency(text) if job.state == "FAILED" else None
    return {
        "run_name": job_id,
        "state": job.state,
        "message": hint or job.message,
        "where": "cluster",
        "job": job.as_dict(),
        "driver": None,
        "mlflow_uri": job.mlflow_uri,
        "mlflow_run_id": (summary or {}).get("mlflow_run_id"),
        "mlflow_status": None,
        "storage_path": (summary or {}).get("storage_path"),
        "summary": summary,
    }


def status(
    run: RunArgument,
    address: AddressOption = None,
    storage: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Show a run's state and summary.

    The state is RUNNING, SUCCEEDED, FAILED or STOPPED, for a run as for a cluster job.

    A local run's state comes from its MLflow run and its driver process (a run whose driver
    is gone without recording its end is FAILED); a cluster job's from the Ray Jobs API, with
    the summary its driver printed once it has ended.

    Examples:

      resnetctl status quickstart-20261203-075655  # needs: a run

      resnetctl status quickstart-20261203-075655 --address http://127.0.0.1:8265  # needs: cluster

    Exit codes: 0 the state was read (whatever it is), 2 no such run or job, or the cluster
    does not answer.
    """
    from resnetctl.launch.remote import RemoteError

    target = _target(run, address, storage)
    if target.run is not None:
        report = target.run.as_dict()
    else:
        try:
            report = job_report(target.address, target.name)
        except RemoteError as exc:
            fail(str(exc))
    if json_:
        print_json(report)
        return
    message = report["message"]
    if report["summary"] and report["where"] == "cluster":
        from resnetctl.launch.outcome import RunSummary

        message = RunSummary.from_dict(report["summary"]).headline()
    _print_state(report["run_name"], report["state"], message)


class _JsonLines:
    """A text stream that prints each complete line written to it as a JSON object."""

    def __init__(self, run_name: str, stream: IO[str]):
        self.run_name, self.stream, self.partial = run_name, stream, ""

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            self.stream.write(json.dumps({"run": self.run_name, "line": line}) + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        if self.partial:
            self.write("\n")
        self.flush()


def logs(
    run: RunArgument,
    address: AddressOption = None,
    storage: StorageOption = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends.")
    ] = False,
    json_: Annotated[
        bool,
        typer.Option("--json", help='One JSON object per log line: {"run": ..., "line": ...}.'),
    ] = False,
) -> None:
    """Print a run's log; --follow keeps printing until the run ends.

    A local run's log is resnetctl.log in its folder; a cluster job's comes from the Ray Jobs
    API (the driver's output: the epoch lines and the summary).

    Examples:

      resnetctl logs quickstart-20261203-075655  # needs: a run

      resnetctl logs quickstart-20261203-075655 -f --address http://127.0.0.1:8265  # needs: cluster

    Exit codes: 0 printed, 2 no such run or job, or no log yet.
    """
    from resnetctl.launch.remote import RemoteError
    from resnetctl.launch.remote import logs as job_logs
    from resnetctl.launch.runstate import RunStateError, follow_log
    from resnetctl.storage import storage_root

    target = _target(run, address, storage)
    stream: Any = _JsonLines(run, sys.stdout) if json_ else sys.stdout
    try:
        if target.run is not None:
            follow_log(target.run, storage_root(storage), stream, follow=follow)
        else:
            job_logs(target.address, target.name, follow=follow, out=stream)
    except (RemoteError, RunStateError) as exc:
        fail(str(exc))
    finally:
        if json_:
            stream.close()


def stop(
    run: RunArgument,
    address: AddressOption = None,
    storage: StorageOption = None,
    timeout: TimeoutOption = 300.0,
    json_: JsonOption = False,
) -> None:
    """Stop a run as Ctrl-C would, and wait until it has ended.

    A local run's driver (on this machine) gets SIGTERM, which it handles as Ctrl-C: the
    checkpoint is kept, the MLflow run is marked KILLED, and `submit FILE --resume RUN`
    continues it. A cluster job is stopped through the Ray Jobs API.

    Examples:

      resnetctl stop quickstart-20261203-075655  # needs: a run

      resnetctl stop quickstart-20261203-075655 --address http://127.0.0.1:8265  # needs: cluster

    Exit codes: 0 it has ended (or had already), 1 still running after --timeout, 2 no such
    run or job, or it cannot be stopped from here (its driver runs on another machine, or is
    gone).
    """
    from resnetctl.launch.remote import RemoteError
    from resnetctl.launch.remote import stop as stop_job
    from resnetctl.launch.runstate import RunStateError, stop_run
    from resnetctl.storage import storage_root

    target = _target(run, address, storage)
    if target.run is None:
        try:
            stop_job(target.address, target.name, wait_s=timeout)
            report = job_report(target.address, target.name)
        except RemoteError as exc:
            fail(str(exc))
    else:
        stored = target.run
        if stored.mlflow_status == "RUNNING" and stored.driver is not None:
            err.print(
                f"stopping {stored.name}: SIGTERM to its driver ({stored.driver.describe()}), "
                "which checkpoints and ends the run",
                highlight=False,
                markup=False,
            )
        started = time.monotonic()
        try:
            stored = stop_run(stored, storage_root(storage), timeout_s=timeout)
        except RunStateError as exc:
            fail(str(exc))
        report = stored.as_dict()
        if report["state"] == "STOPPED":
            report["message"] = _resume_hint(stored)
        report["stop_seconds"] = round(time.monotonic() - started, 1)
    if json_:
        print_json(report)
    else:
        _print_state(report["run_name"], report["state"], report["message"])
    if report["state"] == "RUNNING":
        err.print(f"still running after {timeout:g} s", highlight=False)
        raise typer.Exit(EXIT_JOB_FAILED)


def _print_state(name: str, state: str, message: str) -> None:
    """`NAME: STATE (message)`, the line `status` and `stop` print."""
    line = f"{name}: {state}" + (f" ({message})" if message else "")
    out.print(line, highlight=False, markup=False)


def _resume_hint(stored: Any) -> str:
    from resnetctl.storage import checkpoints

    epochs = [meta["epoch"] for meta, _ in checkpoints(stored.folder)]
    kept = f"checkpoint of epoch {max(epochs)} kept; " if epochs else "no checkpoint yet; "
    return f"{kept}continue with `resnetctl submit FILE --resume {stored.name}`"


def list_(
    address: AddressOption = None,
    storage: StorageOption = None,
    job: Annotated[
        str | None,
        typer.Option("--job", metavar="NAME", help="Only the runs of this job (its spec's name)."),
    ] = None,
    last: Annotated[
        bool,
        typer.Option(
            "--last", help="Print the newest run's name alone, for a script: RUN=$(resnetctl ...)."
        ),
    ] = False,
    json_: JsonOption = False,
) -> None:
    """List the stored runs, or with --address a cluster's jobs.

    Runs: name, job, last checkpoint, MLflow run. Jobs: id, spec, state, start, duration,
    MLflow run.

    Examples:

      resnetctl list

      resnetctl list --job quickstart --last  # needs: a run

      resnetctl list --address http://127.0.0.1:8265 --json  # needs: cluster

      resnetctl list --storage s3://bucket/runs  # needs: a bucket

    Exit codes: 0 listed, 2 the storage or the cluster cannot be read (or with --last, it
    holds no run).
    """
    if not address:
        _list_stored(storage, json_, job=job, last=last)
        return
    if job or last:
        fail("--job and --last select stored runs: use them without --address")
    from resnetctl.launch.remote import RemoteError, list_jobs
    from resnetctl.tracking.lookup import run_for_job

    try:
        jobs = list_jobs(address)
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


def _list_stored(storage: str | None, json_: bool, *, job: str | None, last: bool) -> None:
    from resnetctl.storage import StorageError, checkpoints, list_runs, storage_root
    from resnetctl.storage.checkpoints import progress_key

    try:
        root = storage_root(storage)
        records = [r for r in (list_runs(root) if root.is_dir() else []) if job in (None, r.job)]
        if last:
            if not records:
                of = f" of job {job!r}" if job else ""
                fail(f"no run{of} under {root}")
            newest = max((r.run_name for r in records), key=_started_at)
            if json_:
                print_json({"run": newest})
            else:
                sys.stdout.write(newest + "\n")
            return
        rows = []
        for record in records:
            # Complete checkpoints only: a warning names each incomplete one.
            metas = [meta for meta, _ in checkpoints(root / record.run_name)]
            newest = max(metas, key=progress_key, default=None)
            rows.append(
                {
                    "run": record.run_name,
                    "job": record.job,
                    # Epochs finished at the last checkpoint, and its optimiser step (from the
                    # middle of the next epoch when `position` says so).
                    "last_checkpoint_epoch": None if newest is None else newest["epoch"],
                    "last_checkpoint_step": None if newest is None else newest.get("step"),
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


def _started_at(run_name: str) -> tuple[str, str]:
    """A run's sort key by when it started: the UTC time its name ends with (JOB-YYYYMMDD-
    HHMMSS), across jobs; then the name."""
    found = re.search(r"(\d{8}-\d{6})$", run_name)
    return (found.group(1) if found else "", run_name)


def exit_for_state(state: str) -> None:
    """Exit 1 unless the job succeeded."""
    if state != "SUCCEEDED":
        raise typer.Exit(EXIT_JOB_FAILED)
