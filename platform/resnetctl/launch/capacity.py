"""Room for a job's workers on the Ray cluster this process joined: wait for it (asking the
autoscaler) or fail with a message that says what is missing, never hang."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from resnetctl.bundles import copies_per_node
from resnetctl.spec import JobSpec

Bundle = Mapping[str, float]


class CapacityError(RuntimeError):
    """The cluster cannot hold the job's workers within the placement timeout."""


def bundles_that_fit(bundle: Bundle, nodes: Sequence[Mapping[str, float]]) -> int:
    """How many copies of `bundle` the nodes hold in total (each copy on one node)."""
    return sum(copies_per_node(bundle, node) for node in nodes)


def alive_node_resources() -> list[dict[str, float]]:
    """Total resources of every alive node of the connected cluster."""
    import ray

    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def wait_for_capacity(
    spec: JobSpec,
    *,
    timeout: float | None = None,
    nodes: Callable[[], list[dict[str, float]]] = alive_node_resources,
    request: Callable[[list[dict[str, float]]], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once the cluster's nodes can hold every worker (an elastic run: its fewest,
    `resources.workers.min`); raise `CapacityError` after `timeout` seconds (default
    `resources.placement_timeout_s`). While waiting, the demand (an elastic run: its most
    workers, so that it can grow) is sent to the autoscaler through `request`."""
    res = spec.resources
    bundle = res.worker_bundle()
    timeout = res.placement_timeout_s if timeout is None else timeout
    deadline = clock() + timeout
    asked = False
    while True:
        current = nodes()
        if bundles_that_fit(bundle, current) >= res.min_workers:
            # The request stays until the job ends (the launcher withdraws it): withdrawn now,
            # the autoscaler could remove the new nodes before Train's placement group lands.
            return
        if request is not None and not asked:
            request([dict(bundle)] * res.max_workers)
            asked = True
        if clock() >= deadline:
            have = ", ".join(
                "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(n.items()) if k in bundle) + "}"
                for n in current
            )
            raise CapacityError(
                f"resources: the cluster cannot place {res.min_workers} workers of "
                f"{dict(bundle)} within {timeout:g} s (resources.placement_timeout_s); "
                f"its nodes offer [{have}]"
            )
        sleep(2.0)


def autoscaler_request(bundles: list[dict[str, float]]) -> None:
    """Ask Ray's autoscaler for `bundles` (an empty list withdraws the request)."""
    from ray.autoscaler.sdk import request_resources

    if bundles:
        request_resources(bundles=bundles)
    else:
        request_resources(num_cpus=0)
