"""`resnetctl cluster ...`: check cluster configs, plan a job's placement on one, and drive
Ray's cluster launcher (or kubectl for KubeRay) to start, inspect and stop clusters."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from resnetctl.cli import preemption as preemption_cmd
from resnetctl.cli.common import (
    EXIT_JOB_FAILED,
    EXIT_USAGE,
    JsonOption,
    SetOption,
    err,
    fail,
    load_spec_to_plan,
    out,
    print_json,
    spec_errors,
)

if TYPE_CHECKING:
    from resnetctl.cluster import ClusterConfig
    from resnetctl.cluster.launcher import Command
    from resnetctl.spec import JobSpec

app = typer.Typer(
    help="Check cluster configs, plan nodes, start and stop clusters.\n\n"
    "Cluster configs are cluster/*.yaml; clusters start and stop with Ray's cluster launcher "
    "(or kubectl for KubeRay).",
    no_args_is_help=True,
)

ConfigFile = Annotated[
    Path, typer.Argument(metavar="FILE", help="Cluster config YAML.", show_default=False)
]
YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Do not ask before creating or deleting machines.")
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Print the commands that would run; run nothing.")
]
JobOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--job",
        "-j",
        metavar="SPEC",
        help="Also check that the cluster can supply this job (repeatable).",
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="PATH|URI",
        help="The jobs' run storage (as for submit --storage; default $RESNETCTL_STORAGE, else "
        "~/resnetctl/runs): warns when a job spans several nodes with a local path.",
    ),
]


@app.callback()
def _cluster() -> None:
    """Check cluster configs, plan nodes, start and stop clusters."""


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Cluster configs.")],
    jobs: JobOption = None,
    overrides: SetOption = None,
    strict: Annotated[bool, typer.Option("--strict", help="Fail on warnings too.")] = False,
    storage: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Check cluster configs: Ray's schema, resnetctl's rules.

    Launcher YAML against Ray's own schema, KubeRay manifests with resnetctl's checks, then node
    types, worker limits, GPU declarations, a private dashboard, and with --job that the cluster
    can supply the job.

    Examples:

      resnetctl cluster validate cluster/*.yaml

      resnetctl cluster validate cluster/aws.yaml --job jobs/r50.yaml

    Exit codes: 0 all pass (warnings aside, unless --strict), 2 otherwise.
    """
    from resnetctl.cluster import check_config, plan_placement

    specs = _load_jobs(jobs or [], overrides or [])
    results = []
    failed = False
    for file in files:
        report = check_config(file, specs)
        bad = bool(report.errors) or (strict and bool(report.warnings))
        failed |= bad
        for issue in report.errors:
            err.print(f"[bold red]error:[/] {escape(str(issue))}", highlight=False)
        for issue in report.warnings:
            err.print(f"[yellow]warning:[/] {escape(str(issue))}", highlight=False)
        plans = []
        if report.config is not None and not report.errors:
            plans = [plan_placement(spec, report.config) for spec in specs]
        storage_warnings = _storage_warnings(plans, storage, report.config)
        if strict and storage_warnings:
            bad = failed = True
        results.append(
            {
                "file": str(file),
                "valid": not bad,
                "kind": report.config.kind if report.config else None,
                "errors": [i.as_dict() for i in report.errors],
                "warnings": [i.as_dict() for i in report.warnings],
                "placements": [p.as_dict() for p in plans],
                "storage_warnings": storage_warnings,
            }
        )
        if json_ or bad:
            continue
        config = report.config
        assert config is not None
        types = ", ".join(
            f"{t.name} ({t.describe()}, {t.min_workers}-{t.max_workers})" for t in config.workers
        )
        kind = "KubeRay RayCluster" if config.kind == "kuberay" else f"{config.provider} launcher"
        out.print(
            f"[green]ok[/] {escape(str(file))} ({escape(kind)}; workers: "
            f"{escape(types) or 'none'})",
            highlight=False,
        )
        for plan in plans:
            counts = ", ".join(f"{n} x {t}" for t, n in plan.node_counts.items()) or "head only"
            out.print(f"   job {escape(plan.job)}: {escape(counts)}", highlight=False)
    if json_:
        print_json(results)
    if failed:
        raise typer.Exit(EXIT_USAGE)


@app.command("plan")
def plan(
    job: Annotated[Path, typer.Argument(metavar="SPEC", help="Job spec YAML.")],
    config_file: ConfigFile,
    overrides: SetOption = None,
    storage: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Which nodes of a cluster config a job needs; starts none.

    Which node types, how many nodes, and whether the config can supply them or why not.

    Example: resnetctl cluster plan jobs/r50.yaml cluster/aws.yaml

    Exit codes: 0 it fits, 2 it does not, or a bad spec or config.
    """
    from resnetctl.cluster import format_placement, plan_placement

    spec = _load_jobs([job], overrides or [])[0]
    config = _load_config(config_file)
    result = plan_placement(spec, config)
    storage_warnings = _storage_warnings([result], storage, config)
    if json_:
        print_json({**result.as_dict(), "storage_warnings": storage_warnings})
    else:
        out.print(escape(format_placement(result)), highlight=False)
    if not result.fits:
        raise typer.Exit(EXIT_USAGE)


@app.command("up")
def up(
    config_file: ConfigFile,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    json_: JsonOption = False,
) -> None:
    """Start or update a cluster (ray up, or kubectl apply).

    Runs `ray up -y FILE`, or for a KubeRay manifest `kubectl apply -f FILE`.

    Validates first; creates machines that cost money, so asks unless --yes. The launcher's
    output streams to stderr; --json prints the commands and how each ended on stdout.

    Example: resnetctl cluster up cluster/aws.yaml --yes  # needs: cloud

    Exit codes: 0 done, 1 the launcher failed, 2 a bad config, a missing tool or credential, or
    no --yes without a terminal.
    """
    from resnetctl.cluster import launcher

    config = _load_config(config_file)
    commands = _commands(lambda: launcher.up_commands(config))
    _run_all(
        config, "up", commands, yes=yes, dry_run=dry_run, confirm="Start or update", json_=json_
    )


@app.command("down")
def down(
    config_file: ConfigFile,
    yes: YesOption = False,
    dry_run: DryRunOption = False,
    json_: JsonOption = False,
) -> None:
    """Tear a cluster down (ray down, or kubectl delete).

    Runs `ray down -y FILE`, or for a KubeRay manifest `kubectl delete -f FILE`.

    Example: resnetctl cluster down cluster/aws.yaml --yes  # needs: cloud

    Exit codes: 0 done, 1 the launcher failed, 2 a bad config, a missing tool or credential, or
    no --yes without a terminal.
    """
    from resnetctl.cluster import launcher

    config = _load_config(config_file)
    commands = _commands(lambda: launcher.down_commands(config))
    _run_all(config, "down", commands, yes=yes, dry_run=dry_run, confirm="Tear down", json_=json_)


@app.command("status")
def status(
    config_file: ConfigFile, dry_run: DryRunOption = False, json_: JsonOption = False
) -> None:
    """Show a running cluster's nodes and pending demands.

    A launcher cluster: the head's IP, then `ray status` run on the head; the local fake
    cluster: `ray status` here; KubeRay: the RayCluster object (`kubectl get raycluster`).

    Example: resnetctl cluster status cluster/local.yaml --json  # needs: a running cluster

    Exit codes: 0 shown, 1 the command failed (no cluster running), 2 a bad config, a missing
    tool or credential.
    """
    from resnetctl.cluster import launcher

    config = _load_config(config_file)
    commands = _commands(lambda: launcher.status_commands(config))
    _run_all(config, "status", commands, yes=True, dry_run=dry_run, confirm="", json_=json_)


# ---------------------------------------------------------------------------------------------


def _storage_warnings(plans: list, storage: str | None, config: ClusterConfig | None) -> list[str]:
    """A warning per job whose workers span several nodes with a local run storage; printed
    on stderr, so that it is seen before a job dies at its first checkpoint. The storage is the
    one such a job would get: `--storage`, else the nodes' own, else the cluster default."""
    from resnetctl.cluster.bucket import nodes_storage
    from resnetctl.storage import CLUSTER_DEFAULT_STORAGE, multi_node_storage_warning

    on_nodes = nodes_storage(config.raw, config.provider) if config is not None else None
    where = storage or on_nodes or CLUSTER_DEFAULT_STORAGE
    found = [multi_node_storage_warning(p.job, p.hosts, where) for p in plans if p.fits]
    for warning in filter(None, found):
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False)
    return [w for w in found if w]


def _load_jobs(files: list[Path], overrides: list[str]) -> list[JobSpec]:
    # Placement needs the job's resources, not its data: a data path's variable may be unset.
    with spec_errors():
        return [load_spec_to_plan(f, overrides) for f in files]


def _load_config(file: Path) -> ClusterConfig:
    from resnetctl.cluster import check_config

    report = check_config(file)
    for issue in report.errors:
        err.print(f"[bold red]error:[/] {escape(str(issue))}", highlight=False)
    if report.config is None or report.errors:
        raise typer.Exit(EXIT_USAGE)
    return report.config


def _commands(build: Callable[[], list[Command]]) -> list[Command]:
    from resnetctl.cluster.launcher import LauncherError

    try:
        return build()
    except LauncherError as exc:
        fail(str(exc))


def _run_all(
    config: ClusterConfig,
    action: str,
    commands: list[Command],
    *,
    yes: bool,
    dry_run: bool,
    confirm: str,
    json_: bool = False,
) -> None:
    """Run the launcher's commands in order, stopping at the first that fails; with `json_`,
    a record of them (command, exit code, and for `status` its output) on stdout."""
    from resnetctl.cluster import launcher

    report: dict = {"cluster": config.name, "file": str(config.path), "action": action}
    if dry_run:
        if json_:
            print_json({**report, "dry_run": True, "commands": [str(c) for c in commands]})
            return
        for command in commands:
            out.print(escape(str(command)), highlight=False)
        return
    try:
        launcher.preflight(config, action)
    except launcher.LauncherError as exc:
        fail(str(exc))
    if not yes:
        if not sys.stdin.isatty():
            fail(f"`resnetctl cluster {action}` changes cloud resources: pass --yes to confirm")
        typer.confirm(f"{confirm} cluster {config.name} ({config.path})?", abort=True)
    # Status output is short and scanned for credential errors; up/down stream as they go.
    capture = action == "status"
    ran: list[dict] = []
    report.update(dry_run=False, commands=ran)
    for command in commands:
        err.print(f"$ {escape(str(command))}", highlight=False)
        try:
            result = launcher.run(command, capture=capture)
        except launcher.LauncherError as exc:
            fail(str(exc))
        ran.append({"command": str(command), "returncode": result.returncode})
        if capture:
            ran[-1]["output"] = result.stdout or ""
            if not json_:
                sys.stdout.write(result.stdout or "")
        if result.returncode != 0:
            output = (result.stdout or "") + (result.stderr or "") if capture else ""
            if capture and result.stderr:
                sys.stderr.write(result.stderr)
            hint = launcher.explain_failure(config, output)
            if json_:
                print_json({**report, "ok": False, "error": hint})
            fail(hint or f"{command.args[0]} exited with {result.returncode}", EXIT_JOB_FAILED)
    if json_:
        print_json({**report, "ok": True})


# The watcher runs on the cluster's nodes rather than on the machine that manages the configs;
# it lives in a module of its own.
app.command("watch-preemption")(preemption_cmd.watch_preemption)
