"""`resnetctl submit`: validate a job spec and run it (or just plan it with --dry-run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from resnetctl.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    JsonOption,
    SetOption,
    SpecFile,
    err,
    fail,
    load_spec_to_plan,
    out,
    print_json,
    ray_output_on_stderr,
    spec_errors,
)

if TYPE_CHECKING:
    from resnetctl.spec import JobSpec

DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Validate and print the plan; train nothing.")
]

AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        envvar="RAY_ADDRESS",
        metavar="URL",
        help="Ray cluster to submit to (http://HEAD:8265, its Jobs API; or HOST:6379 to join it "
        "as the driver); default: an embedded local Ray.",
    ),
]

ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="RUN",
        help="Continue this run: its name, `latest` (the newest run of this job), or a "
        "checkpoint dir.",
    ),
]

ClusterOption = Annotated[
    Path | None,
    typer.Option(
        "--cluster",
        metavar="FILE",
        help="With --dry-run: which node types and how many nodes of this cluster config "
        "the job needs, and whether the config can supply them.",
    ),
]

NoWaitOption = Annotated[
    bool,
    typer.Option("--no-wait", help="With a cluster --address: print the job id and return."),
]

SubmitStorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="PATH|URI",
        help="Where run records and checkpoints go: a path or a bucket URI "
        "(s3://bucket/runs). Default: $RESNETCTL_STORAGE, else .resnetctl/runs; with "
        "--address the cluster nodes' $RESNETCTL_STORAGE, else ~/resnetctl/runs there. "
        "Multi-node clusters need a bucket or shared path.",
    ),
]

SmokeOption = Annotated[
    bool,
    typer.Option(
        "--smoke",
        help="Try the job end to end on this machine in a minute or two: synthetic images "
        "at its input size, 2 epochs of 2 steps, workers and devices scaled to this "
        "machine, same model, pipeline, checkpoints and MLflow; named NAME-smoke.",
    ),
]

SmokeSizeOption = Annotated[
    int | None,
    typer.Option(
        "--smoke-size",
        min=8,
        metavar="PIXELS",
        help="With --smoke: scale the input pipeline down to this crop size (faster).",
    ),
]

VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose",
        "-v",
        help="Also print what Ray and MLflow log (always kept in resnetctl.log in the "
        "run's folder).",
    ),
]


def submit(
    file: SpecFile,
    overrides: SetOption = None,
    dry_run: DryRunOption = False,
    address: AddressOption = None,
    resume: ResumeOption = None,
    cluster: ClusterOption = None,
    no_wait: NoWaitOption = False,
    storage: SubmitStorageOption = None,
    smoke: SmokeOption = False,
    smoke_size: SmokeSizeOption = None,
    verbose: VerboseOption = False,
    json_: JsonOption = False,
) -> None:
    """Train the job a spec FILE describes, here or on a Ray cluster.

    Without --address the job runs on an embedded Ray sized to this machine; --dry-run runs
    every check the job would (the spec, this machine's CPUs and GPUs, the data, the storage
    location, the resume target, the tracking store) and prints the plan. With --address it is
    sent to the cluster through the Ray Jobs API (--dry-run then checks what this machine can:
    the spec, the tracking server, the storage location); --cluster FILE --dry-run says which
    nodes of that cluster config the job needs.

    Examples:

      resnetctl submit jobs/quickstart.yaml --dry-run

      resnetctl submit jobs/r50.yaml --dry-run --cluster cluster/aws.yaml

      resnetctl submit jobs/quickstart.yaml --set train.epochs=2 --json  # trains, 1-2 min

      resnetctl submit jobs/quickstart.yaml --resume latest --set train.epochs=4  # needs: a run

      resnetctl submit jobs/r152.yaml --smoke  # trains, 1-2 min

      resnetctl submit jobs/r50.yaml --address http://127.0.0.1:8265 --no-wait  # needs: cluster

    Exit codes: 0 the job succeeded (or the dry run found nothing wrong), 1 it failed,
    2 a bad spec, option, data, storage or resume target, or a cluster that cannot take it,
    130/143 stopped by Ctrl-C/SIGTERM (the run is marked KILLED; --resume continues it).
    """
    from resnetctl.spec import dump_spec

    if smoke_size is not None and not smoke:
        fail("--smoke-size shrinks a smoke run: use it with --smoke")
    if smoke and (address or cluster is not None or resume):
        fail("--smoke is a fresh run on this machine: drop --address, --cluster and --resume")
    remote = bool(address and address.startswith(("http://", "https://")))
    extra = list(overrides or []) + ([f"checkpoint.resume_from={resume}"] if resume else [])
    # A job planned for a cluster may read a variable (its data's root) that only the cluster
    # sets: that is a warning there, not an error.
    lenient = cluster is not None or (remote and dry_run)
    spec = _load(file, extra, smoke=smoke, smoke_size=smoke_size, local=not address, plan=lenient)
    if spec.search is not None:
        err.print(
            f"note: {escape(str(file))} has a `search:` section, which `resnetctl tune` runs; "
            "submit trains the spec without it",
            highlight=False,
        )
    if cluster is not None:
        if not dry_run:
            fail("--cluster plans placement: use it with --dry-run")
        _print_placement(spec, cluster, json_)
        return
    if remote:
        assert address is not None
        _check_remote(spec, storage)
        if dry_run:
            _print_plan(spec, dump_spec(spec), json_, data=False)
        else:
            _submit_remote(spec, address, os.fspath(file), no_wait, storage, json_)
        return
    if address:  # a GCS address (host:port, auto): join that cluster as its driver
        _check_gcs(address)
        os.environ["RAY_ADDRESS"] = address
    if storage:
        os.environ["RESNETCTL_STORAGE"] = storage  # the storage layer, and every Ray worker
    from resnetctl.cli.interrupt import stop_on_signals
    from resnetctl.launch.local import LaunchError, check_before_start, run_local

    if dry_run:
        try:
            check_before_start(spec)
        except LaunchError as exc:
            fail(str(exc))
        _print_plan(spec, dump_spec(spec), json_)
        return
    with stop_on_signals() as interruption:
        try:
            with ray_output_on_stderr():
                # With --json a program reads the output: plain lines, no live bar.
                summary = run_local(
                    spec, spec_file=os.fspath(file), verbose=verbose, live=not json_
                )
        except LaunchError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            # run_local marked the MLflow run KILLED and stopped its Ray on the way out.
            err.print(
                "[bold yellow]interrupted:[/] the run is marked KILLED; continue it with "
                "`resnetctl submit FILE --resume RUN` (`resnetctl list` names it)",
                highlight=False,
            )
            raise typer.Exit(interruption.exit_code) from None
    _keep_summary(summary)
    if json_:
        print_json(summary.as_dict())
    else:
        summary.render(out)
    if not summary.succeeded:
        raise typer.Exit(EXIT_JOB_FAILED)


def _check_remote(spec: JobSpec, storage: str | None) -> None:
    """What `submit --address` checks on this machine before the job is sent: a tracking store
    the cluster can reach, and a storage location pyarrow can open (its contents are the
    cluster's to read)."""
    from resnetctl.launch.remote import RemoteError, check_cluster_tracking
    from resnetctl.storage import StorageError, check_scheme

    try:
        check_cluster_tracking(spec)
        if storage:
            check_scheme(storage)
    except RemoteError as exc:
        fail(str(exc))
    except StorageError as exc:
        fail(f"--storage: {exc}")


def _keep_summary(summary) -> None:  # type: ignore[no-untyped-def]
    """Keep the summary in the run's folder, where `status RUN` reads it (a warning if the
    storage refuses: the run itself is complete)."""
    from resnetctl.storage import StorageError, StoragePath

    try:
        summary.save(StoragePath.of(summary.storage_path))
    except (StorageError, OSError) as exc:
        err.print(f"[yellow]warning:[/] the summary was not kept: {escape(str(exc))}")


def _load(
    file: Path,
    extra: list[str],
    *,
    smoke: bool,
    smoke_size: int | None,
    local: bool,
    plan: bool,
) -> JobSpec:
    """The spec `submit` runs: a smoke variant, one to plan for a cluster (whose data path
    may exist on the cluster alone), or the job as written, checked against this machine when it
    runs here."""
    from resnetctl.spec import load_spec
    from resnetctl.spec.local_checks import check_local

    with spec_errors():
        if smoke:
            spec = _load_smoke(file, extra, smoke_size)
        elif plan:
            spec = load_spec_to_plan(file, extra)
        else:
            spec = load_spec(file, extra)
        if local and not plan:
            check_local(spec)
    return spec


def _check_gcs(address: str) -> None:
    """One line and exit 2, not a traceback after 30 s, when the cluster cannot be joined."""
    from resnetctl.launch.auth import ClusterAccessError, check_gcs_access

    try:
        check_gcs_access(address)
    except ClusterAccessError as exc:
        fail(str(exc))


def _load_smoke(file: Path, overrides: list[str], size: int | None):  # type: ignore[no-untyped-def]
    """The smoke version of the spec in `file` for this machine. The data source is replaced,
    so a variable it reads (the data set's root) needs no value; any other still does."""
    from resnetctl import host
    from resnetctl.spec import SpecError, SpecIssue, load_spec
    from resnetctl.spec.smoke import smoke_spec

    unset: list[SpecIssue] = []
    spec = load_spec(file, overrides, warnings=unset)
    needed = [
        i for i in unset if i.field != "data.source" and not i.field.startswith("data.source.")
    ]
    if needed:
        raise SpecError(needed)
    import torch

    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    spec = smoke_spec(spec, cpus=host.usable_cpus(), cuda_devices=cuda, image_size=size)
    height, width = spec.data.source.image_size
    err.print(
        f"smoke run {spec.name}: {spec.resources.workers} x {spec.resources.device} workers, "
        f"synthetic {height}x{width} images, {spec.train.length[0]} {spec.train.length[1]}s",
        highlight=False,
    )
    return spec


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


def _print_plan(spec: JobSpec, resolved_yaml: str, json_: bool, *, data: bool = True) -> None:
    """The resolved spec and the plan. With `data`, the data set is prepared and checked
    against the spec (sizes, counts); without, the figures that need it say where it is."""
    from resnetctl.data import DataError, prepare_dataset
    from resnetctl.launch.plan import make_plan
    from resnetctl.spec.local_checks import check_data_counts, check_image_size
    from resnetctl.units import human

    try:
        plan = make_plan(spec, data=data)
        layout = prepare_dataset(spec.data) if data else None  # a cache hit: just prepared
    except DataError as exc:
        fail(f"{spec.where('data', 'source')}: data.source: {exc}")
    if layout is not None:
        with spec_errors():
            check_data_counts(spec, layout.train_files, layout.val_files, len(layout.classes))
            size = _first_image_size(layout)
            if size is not None:
                check_image_size(spec, size)
    if json_:
        print_json({"spec": spec.model_dump(mode="json"), "plan": plan.as_dict()})
        return
    err.print("[bold]resolved spec[/]")
    typer.echo(resolved_yaml)
    elsewhere = "counted where the job runs (its data is not read here)"
    table = Table(title=f"plan: {plan.name}", show_header=False)
    rows = [("model", plan.model)]
    if plan.params is not None and plan.macs_per_image is not None:
        rows += [
            ("parameters", f"{plan.params:,} ({human(plan.params)})"),
            (
                "multiply-adds / image",
                f"{plan.macs_per_image:,} ({human(plan.macs_per_image)}) at "
                f"{plan.input_size}x{plan.input_size}",
            ),
            ("classes", str(plan.num_classes)),
        ]
    else:
        rows.append(("parameters, classes", elsewhere))
    if plan.ends:
        low, high = plan.ends[-1].workers, plan.ends[0].workers
        rows.append(("workers", f"{low}-{high} x {plan.device} (elastic: {plan.elastic_policy})"))
        for end in plan.ends:
            rows.append((f"at {end.workers} worker{'s' if end.workers > 1 else ''}", _split(end)))
    else:
        rows += [
            ("workers", f"{plan.workers} x {plan.device}"),
            ("batch", f"{plan.per_worker_batch} per worker, {plan.global_batch} global"),
            ("peak learning rate", f"{plan.peak_lr:g}"),
        ]
    if plan.steps_per_epoch is not None and plan.total_steps is not None:
        rows += [
            ("images", f"{plan.train_images:,} train, {plan.val_images:,} val"),
            ("steps per epoch", f"{plan.steps_per_epoch:,}"),
            ("epochs", f"{plan.epochs:g}"),
            ("total steps", f"{plan.total_steps:,}"),
        ]
        if plan.training_flops is not None:
            flops = plan.training_flops
            rows.append(("training FLOPs", f"{flops:.3e} ({human(flops)})"))
    else:
        if plan.epochs is not None:
            rows.append(("epochs", f"{plan.epochs:g}"))
        rows.append(("images, steps, FLOPs", elsewhere))
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def _split(end) -> str:  # type: ignore[no-untyped-def]
    """One end of an elastic range: batch per worker, accumulation, global batch, peak lr."""
    text = (
        f"{end.per_worker_batch} per worker x {end.accumulation} accumulation = "
        f"{end.global_batch} global, peak lr {end.peak_lr:g}"
    )
    if end.steps_per_epoch is not None:
        text += f", {end.steps_per_epoch:,} steps/epoch"
    return text


def _first_image_size(layout) -> tuple[int, int] | None:  # type: ignore[no-untyped-def]
    """(height, width) of the first training image, read from its header: CIFAR-style sets
    hold images of one size, which the pipeline's crop and padding must fit."""
    from PIL import Image

    if hasattr(layout, "first_image_size"):  # packed shards: sizes noted in the manifest
        return layout.first_image_size()
    with layout.train_list.open(encoding="utf-8") as lines:
        first = lines.readline().rstrip("\n")
    if not first:
        return None
    try:
        with Image.open(layout.train_dir / first.rsplit(" ", 1)[0]) as image:
            width, height = image.size
    except OSError:
        return None
    return height, width


def _submit_remote(
    spec, address: str, spec_file: str, no_wait: bool, storage: str | None, json_: bool
) -> None:  # type: ignore[no-untyped-def]
    from resnetctl.cli.jobs import exit_for_state, job_report, null_summary
    from resnetctl.launch import remote
    from resnetctl.launch.outcome import RunSummary

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
    try:
        remote.logs(address, job_id, follow=True, out=sys.stderr)
        report = job_report(address, job_id)
    except remote.RemoteError as exc:
        fail(str(exc))
    job, summary = report["job"], report["summary"]
    if json_:
        # The run summary a local `submit --json` prints, and the job's record beside it.
        print_json({**(summary or null_summary(job_id)), **job})
    elif summary:
        headline = RunSummary.from_dict(summary).headline()
        out.print(f"{job_id}: {job['state']} ({headline})", highlight=False, markup=False)
    else:
        out.print(f"{job_id}: {job['state']}", highlight=False, markup=False)
    if job["state"] == "FAILED" and report["message"] != job["message"]:
        err.print(f"[bold red]error:[/] {escape(report['message'])}", highlight=False)
    exit_for_state(job["state"])
