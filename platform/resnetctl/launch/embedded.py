"""The embedded Ray that `submit` and `tune` start when no cluster is given.

It is one machine, this process's own, sized to the CPUs the process may use, with the dashboard
on loopback (`tune` frees a stopped trial's placement group through Ray's state API, which the
dashboard serves). It goes without the services only a cluster
needs, because on a small machine every process Ray adds takes CPU from the training workers
(docs/benchmarks.md splits the cores by role):

* the preemption watcher, an actor polling for spot nodes a cloud is about to reclaim;
* Ray Train's Prometheus metrics of the controller and every worker, and Ray's own metrics
  collection in every process: nothing scrapes an embedded Ray.

The settings are environment variables, set before `ray.init` so that the driver (which reads
Ray Train's when a trainer's `fit()` starts), Ray's daemons and every worker see them, and
removed again by `stop`. A variable already set in the environment wins.

It is private even when another Ray runs, or ran, on the machine:

* `ray.init()` without an address joins the cluster named in Ray's address file
  (`ray_current_cluster` in Ray's temp folder, written by `ray start --head` and left behind when
  a head dies); `address="local"` always starts a new instance. Such an instance writes no
  address file (only `ray start` does), so another cluster's file is neither read nor replaced.
* Ray's state API finds "the" local Ray from that address file, or by scanning for GCS
  processes. Ray Train's placement-group cleaner asks it whether a run's controller still lives
  (a sweep needs the answer to free a stopped trial's CPUs for the next one): it would ask
  another cluster, which does not know our controller and so frees our running workers'
  placement group, or fail when several Rays run. `RAY_API_SERVER_ADDRESS` names our own
  dashboard to this process and every process of our Ray.
* The dashboard gets a free port rather than Ray's default 8265, which a `ray start --head` holds.
  The port is never one of Ray's fixed defaults: the dashboard agent of our own Ray takes 52365,
  and Ray refuses to start when two of its components are given one port (the operating system
  hands 52365 out as a free port like any other).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from resnetctl.host import usable_cpus

#: What an embedded Ray turns off, as the environment variables Ray reads.
EMBEDDED_ENV: dict[str, str] = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_enable_metrics_collection": "0",
}

#: The driver's settings that Ray workers must see too: they read the same data cache and run
#: storage even where Ray's worker pool was started from another environment.
WORKER_ENV = ("RESNETCTL_CACHE", "RESNETCTL_STORAGE", "XDG_CACHE_HOME")

_added: list[str] = []
#: Variables `start` set over a value of the environment, with the value to put back.
_replaced: dict[str, str | None] = {}


def ensure_ray(address: str | None, *, env_vars: Mapping[str, str] | None = None) -> bool:
    """Join the cluster at `address`, or start this process's own embedded Ray without one.

    True if this process started the Ray it is connected to (and must `stop` it). Nothing
    happens when Ray is already initialised in this process. `env_vars` go to every worker of
    an embedded Ray.
    """
    import ray

    if ray.is_initialized():
        return False
    if address:
        # Ray's "Connected to Ray cluster. View the dashboard at ..." line (INFO, in colour
        # whatever the terminal) is the cluster's chatter, not the job's: WARNING and up only.
        _init(address=address, log_to_driver=True, logging_level="WARNING")
        return False
    start(env_vars=env_vars)
    return True


def worker_env() -> dict[str, str]:
    """`WORKER_ENV` as set in this process, for `ensure_ray(env_vars=...)`."""
    return {key: os.environ[key] for key in WORKER_ENV if key in os.environ}


def start(*, env_vars: Mapping[str, str] | None = None, dashboard_port: int | None = None) -> None:
    """`ray.init` a new private local Ray with `EMBEDDED_ENV`; `env_vars` go to every Ray worker."""
    port = dashboard_port or _free_port()
    for name, value in EMBEDDED_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            _added.append(name)
    from resnetctl.launch.auth import TOKEN_VARIABLE, auth_disabled, find_token

    if not auth_disabled() and find_token() is None:
        # Ray would generate a token and keep it in ~/.ray/auth_token: a run leaves nothing in
        # the user's home. This private instance's token lives in its processes' environment
        # only, for as long as it runs.
        os.environ[TOKEN_VARIABLE] = secrets.token_hex(32)
        _added.append(TOKEN_VARIABLE)
    _replaced["RAY_API_SERVER_ADDRESS"] = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    try:
        _init(
            address="local",
            num_cpus=usable_cpus(),
            runtime_env={"env_vars": dict(env_vars)} if env_vars else None,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=port,
            log_to_driver=True,
            logging_level="WARNING",
        )
    except BaseException:
        _restore_environment()
        raise


def stop() -> None:
    """Shut the embedded Ray down and take `EMBEDDED_ENV` out of this process again, with
    the folders Ray's processes made in the temp folder and cannot remove themselves."""
    import ray

    left = multiprocessing_folders()
    session = session_folder()
    ray.shutdown()
    for folder in left:
        shutil.rmtree(folder, ignore_errors=True)
    if session is not None and not os.environ.get(KEEP_SESSION_VARIABLE):
        remove_session(session)
    _restore_environment()


#: Set (to anything) to keep the embedded Ray's session folder (Ray's own logs) after a run.
KEEP_SESSION_VARIABLE = "RESNETCTL_KEEP_RAY_SESSION"


def session_folder() -> Path | None:
    """The session folder of the Ray this process started (`<temp>/ray/session_...`), or
    None."""
    try:
        from ray._private import worker

        node = worker.global_worker.node
        return Path(node.get_session_dir_path()) if node is not None else None
    except Exception:  # noqa: BLE001 - an internal of Ray's: without it, nothing is removed
        return None


def remove_session(folder: Path) -> None:
    """Remove an ended Ray's session folder and the links Ray made to it beside it
    (`session_latest`, the Prometheus discovery file), then Ray's temp folder if that left it
    empty. Each embedded run's Ray writes one (2 MB of its daemons' logs, which the run's own
    log already holds): kept, they pile up in the temp folder run after run."""
    shutil.rmtree(folder, ignore_errors=True)
    parent = folder.parent
    for link in parent.iterdir() if parent.is_dir() else ():
        if link.is_symlink() and Path(os.readlink(link)).is_relative_to(folder):
            link.unlink(missing_ok=True)
    try:
        parent.rmdir()  # only when empty: other Rays' sessions stay
    except OSError:
        pass


def multiprocessing_folders(root: int | None = None) -> set[Path]:
    """The `pymp-*` folders in the temp folder that process `root` (default: this one) or a
    process under it listens in.

    Ray's dashboard starts its modules through a multiprocessing forkserver, whose socket lives
    in a `pymp-*` folder that Python removes at a normal exit; Ray ends the dashboard with a
    signal, so every Ray start would leave one behind. Found by the socket a live process of
    ours holds, never by name alone: another program's folder is not touched.
    """
    import psutil

    temp = Path(tempfile.gettempdir()).resolve()
    found: set[Path] = set()
    try:
        top = psutil.Process(root or os.getpid())
        processes = [top, *top.children(recursive=True)]
    except psutil.Error:
        return found
    for process in processes:
        try:
            sockets = process.net_connections(kind="unix")
        except psutil.Error:
            continue
        for sock in sockets:
            path = Path(sock.laddr) if isinstance(sock.laddr, str) and sock.laddr else None
            if path is not None and path.parent.parent == temp:
                if path.parent.name.startswith("pymp-"):
                    found.add(path.parent)
    return found


def _init(**options: Any) -> None:
    """`ray.init(**options)`, keeping the SIGTERM handler this process had chosen.

    `ray.init` replaces it with its own (a `sys.exit(15)`) and its core worker with a C handler
    that aborts the process (exit -6): `resnetctl` turns SIGTERM into the same clean stop as
    Ctrl-C, which must still be in place once Ray runs.
    """
    import ray

    chosen: Callable[..., Any] | int | None = None
    if threading.current_thread() is threading.main_thread():
        chosen = signal.getsignal(signal.SIGTERM)
    try:
        ray.init(**options)
    finally:
        if callable(chosen):
            signal.signal(signal.SIGTERM, chosen)


def _free_port() -> int:
    """A loopback port free now that none of Ray's components takes by default."""
    from ray._private import ray_constants

    taken_by_ray = {
        ray_constants.DEFAULT_PORT,
        ray_constants.DEFAULT_DASHBOARD_PORT,
        ray_constants.DEFAULT_DASHBOARD_AGENT_LISTEN_PORT,
    }
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken_by_ray:
            return port


def _restore_environment() -> None:
    while _added:
        os.environ.pop(_added.pop(), None)
    while _replaced:
        name, value = _replaced.popitem()
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
