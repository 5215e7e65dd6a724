"""`resnetctl submit`: validate a job spec and run it (or just plan it with --dry-run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from resnetctl.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    JsonOption,
    SetOption,
    SpecFile,
    err,
    fail,
    out,
    print_json,
    ray_output_on_stderr,
    spec_errors,
)


def submit(
    file: SpecFile,
    overrides: SetOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and print the plan; train nothing.")
    ] = False,
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            envvar="RAY_ADDRESS",
            help="Ray cluster to submit to (http://HEAD:8265); default: an embedded local Ray.",
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="RUN",
            help="Continue this run: its name, `latest` (the newest run of this job), or a "
            "checkpoint dir.",
        ),
    ] = None,
    cluster: Annotated[
        Path | None,
        typer.Option(
            "--cluster",
            help="With --dry-run: which node types and how many nodes of this cluster config "
            "the job needs, and whether the config can supply them.",
        ),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="With a cluster --address: print the job id and return."),
    ] = False,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Where run records and checkpoints go: a path or a bucket URI "
            "(s3://bucket/runs). Default: $RESNETCTL_STORAGE, else .resnetctl/runs "
            "(~/resnetctl/runs on a cluster). Multi-node clusters need a bucket or shared path.",
        ),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Run a training job described by FILE.

    Examples:

      resnetctl submit jobs/quickstart.yaml

      resnetctl submit jobs/r50.yaml --dry-run --set data.source.root=/data/imagenet

      resnetctl submit jobs/cifar-r56.yaml --set train.epochs=1 --json

      resnetctl submit jobs/r50.yaml --address http://127.0.0.1:8265 --no-wait

      resnetctl submit jobs/quickstart.yaml --storage s3://bucket/runs
    """
    from resnetctl.spec import dump_spec, load_spec
    from resnetctl.spec.local_checks import check_local

    with spec_errors():
        extra = list(overrides or [])
        if resume:
            extra.append(f"checkpoint.resume_from={resume}")
        spec = load_spec(file, extra)
        if not address and cluster is None:
            check_local(spec)
    if cluster is not None:
        if not dry_run:
            fail("--cluster plans placement: use it with --dry-run")
        _print_placement(spec, cluster, json_)
        return
    if dry_run:
        _print_plan(spec, dump_spec(spec), json_)
        return
    if address and address.startswith(("http://", "https://")):
        _submit_remote(spec, address, os.fspath(file), no_wait, storage, json_)
        return
    if address:  # a GCS address (host:port, auto): join that cluster as its driver
        _check_gcs(address)
        os.environ["RAY_ADDRESS"] = address
    if storage:
        os.environ["RESNETCTL_STORAGE"] = storage  # the storage layer, and every Ray worker
    from resnetctl.launch.local import LaunchError, run_local

    try:
        with ray_output_on_stderr():
            summary = run_local(spec, spec_file=os.fspath(file))
    except LaunchError as exc:
        fail(str(exc))
    if json_:
        print_json(summary.as_dict())
    else:
        summary.render(out)
    if not summary.succeeded:
        raise typer.Exit(EXIT_JOB_FAILED)


def _check_gcs(address: str) -> None:
    """One line and exit 2, not a traceback after 30 s, when the cluster cannot be joined."""
    from resnetctl.launch.auth import ClusterAccessError, check_gcs_access

    try:
        check_gcs_access(address)
    except ClusterAccessError as exc:
        fail(str(exc))


def _print_placement(spec, config: Path, json_: bool) -> None:  # type: ignore[no-untyped-def]
    from resnetctl.cluster import ClusterConfigError, format_placement, plan_placement

    try:
        plan = plan_placement(spec, config)
    except ClusterConfigError as exc:
        fail(str(exc))
    if json_:
        print_json(plan.as_dict())
    else:
        out.print(format_placement(plan), highlight=False, markup=False)
    if not plan.fits:
        raise typer.Exit(EXIT_USAGE)


def _print_plan(spec, resolved_yaml: str, json_: bool) -> None:  # type: ignore[no-untyped-def]
    from resnetctl.data import DataError
    from resnetctl.launch.plan import make_plan
    from resnetctl.units import human

    try:
        plan = make_plan(spec)
    except DataError as exc:
        fail(f"{spec.where('data', 'source')}: data.source: {exc}")
    if json_:
        print_json({"spec": spec.model_dump(mode="json"), "plan": plan.as_dict()})
        return
    err.print("[bold]resolved spec[/]")
    typer.echo(resolved_yaml)
    table = Table(title=f"plan: {plan.name}", show_header=False)
    rows = [
        ("model", plan.model),
        ("parameters", f"{plan.params:,} ({human(plan.params)})"),
        (
            "multiply-adds / image",
            f"{plan.macs_per_image:,} ({human(plan.macs_per_image)}) at "
            f"{plan.input_size}x{plan.input_size}",
        ),
        ("classes", str(plan.num_classes)),
        ("workers", f"{plan.workers} x {plan.device}"),
        ("batch", f"{plan.per_worker_batch} per worker, {plan.global_batch} global"),
        ("peak learning rate", f"{plan.peak_lr:g}"),
        ("images", f"{plan.train_images:,} train, {plan.val_images:,} val"),
        ("steps per epoch", f"{plan.steps_per_epoch:,}"),
        ("epochs", f"{plan.epochs:g}"),
        ("total steps", f"{plan.total_steps:,}"),
        ("training FLOPs", f"{plan.training_flops:.3e} ({human(plan.training_flops)})"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def _submit_remote(
    spec, address: str, spec_file: str, no_wait: bool, storage: str | None, json_: bool
) -> None:  # type: ignore[no-untyped-def]
    from resnetctl.cli.jobs import exit_for_state
    from resnetctl.launch import remote

    try:
        job_id = remote.submit(spec, address, storage=storage, spec_file=spec_file)
    except remote.RemoteError as exc:
        fail(str(exc))
    err.print(
        f"submitted {job_id} to {address}\n"
        f"  resnetctl status {job_id} --address {address}\n"
        f"  resnetctl logs {job_id} --follow --address {address}\n"
        f"  resnetctl stop {job_id} --address {address}",
        highlight=False,
    )
    if no_wait:
        if json_:
            print_json({"job_id": job_id, "address": address})
        else:
            out.print(job_id, highlight=False)
        return
    remote.logs(address, job_id, follow=True, out=sys.stderr)
    job = remote.info(address, job_id)
    if json_:
        print_json(job.as_dict())
    else:
        out.print(f"{job.job_id}: {job.state}", highlight=False)
    exit_for_state(job.state)
