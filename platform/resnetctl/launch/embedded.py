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
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from resnetctl.host import usable_cpus

#: What an embedded Ray turns off, as the environment variables Ray reads.
EMBEDDED_ENV: dict[str, str] = {
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
    "RAY_enable_metrics_collection": "0",
}

_added: list[str] = []


def start(*, env_vars: Mapping[str, str] | None = None, dashboard_port: int | None = None) -> None:
    """`ray.init` a local Ray with `EMBEDDED_ENV`; `env_vars` go to every Ray worker."""
    import ray

    for name, value in EMBEDDED_ENV.items():
        if name not in os.environ:
            os.environ[name] = value
            _added.append(name)
    try:
        ray.init(
            num_cpus=usable_cpus(),
            runtime_env={"env_vars": dict(env_vars)} if env_vars else None,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            dashboard_port=dashboard_port,
            log_to_driver=True,
            logging_level="WARNING",
        )
    except BaseException:
        _restore_environment()
        raise


def stop() -> None:
    """Shut the embedded Ray down and take `EMBEDDED_ENV` out of this process again."""
    import ray

    ray.shutdown()
    _restore_environment()


def _restore_environment() -> None:
    while _added:
        os.environ.pop(_added.pop(), None)
