"""System metrics of every node of a run: MLflow's `SystemMetricsMonitor` (psutil for CPU,
memory, disk and network; nvidia-ml-py for NVIDIA GPUs where CUDA is present), run by one
worker of the run on each node.

Each node logs under its own prefix, `system/node-<first 8 hex digits of its Ray node id>/...`
(MLflow's `node_id`), so the System metrics tab shows one chart per node and metric; the
prefixes match the node ids of the run's `ray.worker_nodes` tag. The monitor writes to the run
directly (workers otherwise never talk to MLflow): the tracking URI must be reachable from the
nodes, as `submit --address` already requires. A sample is logged every
`tracking.system_metrics_interval_s` seconds; 0 turns the monitor off.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: What the driver passes to the workers (`loop_config["tracking"]`).
URI_KEY, RUN_KEY, INTERVAL_KEY = "uri", "run_id", "system_metrics_interval_s"


def node_label(node_id: str) -> str:
    """The MLflow node id of a Ray node: `node-` and the first 8 hex digits of its id."""
    return f"node-{node_id[:8]}"


def worker_config(uri: str, run_id: str, interval_s: float) -> dict[str, Any]:
    """What a worker needs to monitor its node: the run and the sampling interval."""
    return {URI_KEY: uri, RUN_KEY: run_id, INTERVAL_KEY: float(interval_s)}


def build_monitor(config: dict[str, Any], node_id: str, *, cuda: bool) -> Any:
    """A `SystemMetricsMonitor` of this node for the run in `config`, not started. It continues
    the run's system-metric steps (a resumed run), and samples GPUs only when `cuda`."""
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    from mlflow.system_metrics.metrics.rocm_monitor import ROCMMonitor
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        config[RUN_KEY],
        sampling_interval=config[INTERVAL_KEY],
        samples_before_logging=1,
        resume_logging=True,
        node_id=node_label(node_id),
        tracking_uri=config[URI_KEY],
    )
    if not cuda:
        gpu = (GPUMonitor, ROCMMonitor)
        monitor.monitors = [m for m in monitor.monitors if not isinstance(m, gpu)]
    return monitor


@contextlib.contextmanager
def first_on_node(node_id: str, run_id: str) -> Iterator[bool]:
    """True in exactly one of the run's workers on node `node_id` at a time: the one holding a
    lock of the node and run. Not Ray Train's local rank, which groups workers by IP address,
    so that nodes sharing one (several raylets on a machine) count apart. The lock goes with its
    process, however that ends (Ray ends its workers without running `finally` blocks): a
    restarted worker group takes it again, and nothing is left in the temp folder."""
    name = f"resnetctl-system-metrics-{run_id}-{node_id[:16]}"
    if sys.platform.startswith("linux"):
        with _abstract_socket_lock(name) as held:
            yield held
    else:
        with _file_lock(name) as held:
            yield held


@contextlib.contextmanager
def _abstract_socket_lock(name: str) -> Iterator[bool]:
    """A lock that is a name in Linux's abstract socket namespace: one process binds it, and
    the kernel frees it when that process's socket closes, at the latest when the process
    dies. It is no file."""
    import socket

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind("\0" + name)
    except OSError:  # another worker of the run on this node holds it
        sock.close()
        held = False
    else:
        held = True
    if not held:
        # Outside the handler: an error in the caller's block must not carry the bind's.
        yield False
        return
    try:
        yield True
    finally:
        sock.close()


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[bool]:
    """An flock'ed file in the temp folder (where there are no abstract sockets); removed by
    its holder when it ends normally."""
    import fcntl
    import tempfile

    path = Path(tempfile.gettempdir()) / f"{name}.lock"
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except OSError:  # another worker of the run on this node holds it
            held = False
        if not held:
            # Outside the handler: yielded inside it, every error of the block would carry
            # this BlockingIOError as its context in the tracebacks of the run's log.
            yield False
            return
        try:
            yield True
        finally:
            # Removed before it is released, so that nothing is left in the temp folder. Workers
            # open it as they start, long before the holder ends: none is left holding the old
            # file while a later one creates a new.
            path.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def node_monitor(config: dict[str, Any] | None, node_id: str) -> Iterator[Any]:
    """Monitor this node while the block runs, when `config` asks for it and this worker is
    the first of the run on its node (`first_on_node`); yields the monitor or None. A monitor
    that cannot start is a warning: the run's metrics matter more than the node's."""
    if not config or not config.get(INTERVAL_KEY):
        yield None
        return
    with first_on_node(node_id, str(config[RUN_KEY])) as first:
        if not first:
            yield None
            return
        # Its start and stop notices reach the driver late, after the job's log is closed,
        # where they would break the clean terminal stream: warnings only.
        logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)
        try:
            import torch

            monitor = build_monitor(config, node_id, cuda=torch.cuda.is_available())
            monitor.start()
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("system metrics of node %s are not logged: %s", node_label(node_id), exc)
            yield None
            return
        try:
            yield monitor
        finally:
            monitor.finish()
