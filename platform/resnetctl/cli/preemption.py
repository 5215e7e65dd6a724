"""`resnetctl cluster watch-preemption`: a node's watcher of its cloud's reclaim notices, which
drains the node's own Ray node with the announced deadline (resnetctl.preemption)."""

from __future__ import annotations

import enum
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from resnetctl.cli.common import EXIT_JOB_FAILED, EXIT_USAGE, err, fail, out
from resnetctl.preemption.registry import PROVIDERS, provider_names

if TYPE_CHECKING:
    from resnetctl.preemption import Provider, RayNode

#: How long a starting watcher waits for its Ray node to show up before it gives up.
STARTUP_WAIT_S = 300.0
_NODE_ID = re.compile(r"^[0-9a-f]{56}$")

ProviderName = enum.Enum(  # type: ignore[misc]  # the registry's names, as --provider choices
    "ProviderName", {name: name for name in provider_names()}, type=str
)
# The options only some providers read: `--provider` names which (the `takes` of its class).
_SPECIFIC = {
    "metadata_url": "--metadata-url",
    "grace_period_s": "--grace-period-seconds",
    "drain_on_rebalance": "--drain-on-rebalance",
}


def watch_preemption(
    provider: Annotated[
        ProviderName,
        typer.Option(
            "--provider",
            "-p",
            metavar="[" + "|".join(provider_names()) + "]",
            help="Where the notice comes from: aws (spot interruption notice and rebalance "
            "recommendation, IMDSv2), gcp (instance/preempted on the metadata server), "
            "kubernetes (run as the Ray container's preStop hook: the pod is being deleted).",
            show_default=False,
        ),
    ],
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="HOST:PORT",
            help="GCS address of the cluster (default: the one this node's `ray start` wrote "
            "in its temp dir).",
        ),
    ] = None,
    temp_dir: Annotated[
        str | None,
        typer.Option(
            "--temp-dir",
            metavar="DIR",
            help="The --temp-dir this node's `ray start` was given (default: Ray's, /tmp/ray); "
            "tells this node apart from other Ray nodes on the same machine.",
        ),
    ] = None,
    node_id: Annotated[
        str | None,
        typer.Option(
            "--node-id",
            metavar="HEX",
            help="This node's Ray node id (default: the cluster's one raylet on this machine).",
        ),
    ] = None,
    metadata_url: Annotated[
        str | None,
        typer.Option(
            "--metadata-url",
            metavar="URL",
            help="Base URL of the metadata service (default: aws http://169.254.169.254, gcp "
            "http://metadata.google.internal).",
        ),
    ] = None,
    grace_period_s: Annotated[
        float | None,
        typer.Option(
            "--grace-period-seconds",
            min=1.0,
            metavar="SECONDS",
            help="kubernetes: the pod's terminationGracePeriodSeconds (default 30).",
        ),
    ] = None,
    drain_on_rebalance: Annotated[
        bool,
        typer.Option(
            "--drain-on-rebalance",
            help="aws: also drain (without a deadline) on a rebalance recommendation, which "
            "is otherwise only logged.",
        ),
    ] = False,
    interval_s: Annotated[
        float | None,
        typer.Option(
            "--interval",
            min=0.1,
            metavar="SECONDS",
            help="aws: seconds between reads (default 2); gcp: longest wait of one hanging "
            "read (default 60).",
        ),
    ] = None,
    log_file: Annotated[
        Path | None,
        typer.Option(
            "--log-file",
            metavar="PATH",
            help="Append the log here (default: stderr).",
            dir_okay=False,
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Read the notice source once, find this node's Ray node, print both and exit "
            "(0: both fine, 1: not); drains nothing.",
        ),
    ] = False,
) -> None:
    """Drain this Ray node when its cloud announces a reclaim.

    Watches the cloud for a reclaim notice and drains this node as `ray drain-node --reason
    DRAIN_NODE_REASON_PREEMPTION --deadline-remaining-seconds N` does, with the cloud's
    deadline, which Ray Train passes on to the training loop. Runs on each worker node
    (cluster/aws.yaml and cluster/gcp.yaml start it after `ray start`; the KubeRay manifest runs
    it as the preStop hook). Network errors are logged and retried; it ends once it has drained
    the node (exit 0; 1 if the drain failed until the deadline) or when Ray stops on the node
    (0). Exit codes: 0 drained or Ray stopped here, 1 the drain failed, 2 bad input.

    Examples:

      resnetctl cluster watch-preemption --provider aws --check  # needs: cloud

      resnetctl cluster watch-preemption --provider gcp --log-file watch.log  # needs: cloud
    """
    started_at = _process_start()
    name = provider.value
    _check_options(name, node_id, metadata_url, grace_period_s, drain_on_rebalance)

    from resnetctl.launch.auth import enable_for_ray_clients
    from resnetctl.preemption import Settings, Watcher, make_provider, setup_log

    enable_for_ray_clients()  # before Ray is imported: its clients read RAY_AUTH_MODE once
    settings = Settings(
        metadata_url=metadata_url, grace_period_s=grace_period_s, started_at=started_at
    )
    source = make_provider(name, settings)
    if check:
        raise typer.Exit(_check(name, source, address, temp_dir, node_id))

    try:
        log = setup_log(log_file)
    except OSError as exc:
        fail(f"--log-file {log_file}: {exc.strerror or exc}")
    node = _find_node(log, address, temp_dir, node_id)
    if node is None:
        raise typer.Exit(EXIT_JOB_FAILED)
    watcher = Watcher(source, node, wait_s=interval_s, drain_advisories=drain_on_rebalance, log=log)
    try:
        status = watcher.run()
    except KeyboardInterrupt:  # by hand: Ctrl-C ends the watch, as a shell reports SIGINT
        log.info("stopped by Ctrl-C")
        status = 130
    raise typer.Exit(status)


def _check(
    name: str, source: Provider, address: str | None, temp_dir: str | None, node_id: str | None
) -> int:
    """`--check`: the notice source and this Ray node, once; 0 when both could be read."""
    from resnetctl.preemption import MetadataError, NodeNotFound, RayNode
    from resnetctl.preemption.notice import utc

    ok = True
    try:
        for line in source.check():
            out.print(escape(f"{name}: {line}"), highlight=False)
    except MetadataError as exc:
        err.print(
            f"[bold red]error:[/] {escape(f'{name}: cannot read the notice: {exc}')}",
            highlight=False,
        )
        ok = False
    try:
        node = RayNode.find(address, temp_dir, node_id)
        deadline = node.draining_deadline_ms()
    except NodeNotFound as exc:
        err.print(f"[bold red]error:[/] ray: {escape(str(exc))}", highlight=False)
        return EXIT_JOB_FAILED
    except Exception as exc:  # the GCS answered the node lookup, then not this
        err.print(
            f"[bold red]error:[/] ray: {escape(f'{type(exc).__name__}: {exc}')}",
            highlight=False,
        )
        return EXIT_JOB_FAILED
    state = "not draining"
    if deadline is not None:
        state = f"DRAINING, deadline {utc(deadline / 1000) if deadline else 'none'}"
    out.print(
        escape(f"ray: node {node.node_id} of the cluster at {node.address}: {state}"),
        highlight=False,
    )
    return 0 if ok else EXIT_JOB_FAILED


def _check_options(
    name: str,
    node_id: str | None,
    metadata_url: str | None,
    grace_period_s: float | None,
    drain_on_rebalance: bool,
) -> None:
    given = {
        "metadata_url": metadata_url is not None,
        "grace_period_s": grace_period_s is not None,
        "drain_on_rebalance": drain_on_rebalance,
    }
    takes = PROVIDERS[name].takes
    for key, flag in _SPECIFIC.items():
        if given[key] and key not in takes:
            users = ", ".join(n for n in provider_names() if key in PROVIDERS[n].takes)
            fail(f"{flag} applies to --provider {users}, not {name}", EXIT_USAGE)
    if metadata_url is not None and not re.match(r"^https?://[^/\s]+", metadata_url):
        fail(f"--metadata-url {metadata_url!r}: expected http://HOST[:PORT]", EXIT_USAGE)
    if node_id is not None and not _NODE_ID.match(node_id):
        fail(f"--node-id {node_id!r}: expected Ray's 56 hex digits", EXIT_USAGE)


def _find_node(
    log: logging.Logger, address: str | None, temp_dir: str | None, node_id: str | None
) -> RayNode | None:
    """This node's Ray node, waiting (with a backoff) while Ray is not up yet; None after
    `STARTUP_WAIT_S`."""
    from resnetctl.preemption import NodeNotFound, RayNode
    from resnetctl.preemption.backoff import Backoff

    backoff = Backoff(cap=15.0)
    give_up = time.monotonic() + STARTUP_WAIT_S
    while True:
        try:
            return RayNode.find(address, temp_dir, node_id)
        except NodeNotFound as exc:
            if time.monotonic() >= give_up:
                log.error("giving up after %g s: %s", STARTUP_WAIT_S, exc)
                return None
            delay = backoff.delay()
            log.warning("%s; trying again in %g s", exc, delay)
            time.sleep(delay)


def _process_start() -> float:
    """When this process started: a preStop hook's notice is its start, and imports take
    seconds."""
    import psutil

    return float(psutil.Process().create_time())
