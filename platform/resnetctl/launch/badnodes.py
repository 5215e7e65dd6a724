"""Nodes a run stops using: one on which the run's worker processes died `limit` times.

A node that kills processes (bad memory, a failing disk, a GPU that falls off the bus) fails
the same run again after every restart, and each time every other GPU redoes the steps since
the last checkpoint. Ray Train restarts the group on whatever nodes have room, the bad one
included. Here, on the Ray Train controller:

* `NodeFailures` counts, per node, the worker-group failures in which a worker process on it
  died or stopped answering Ray's health checks (`WorkerHealthCheckFailedError`,
  `WorkerHealthCheckTimeoutError`). An exception raised by the training code does not count:
  it would be raised on any node. Each group failure counts once per node.
* `BadNodeCallback` reads which rank ran on which node when a group starts, counts the failures
  Ray Train's polls report, and before each restart gives Ray Train a label selector that keeps
  the group off the excluded nodes (`ray.io/node-id: !in(...)`, the controller's
  `on_controller_start_worker_group` hook). It says so in the run's log, on the terminal and in
  MLflow (`resnetctl.excluded_node.<n>` tags, the `excluded_nodes` metric). The node itself
  stays up: other jobs may use it, and a cluster's autoscaler removes it once idle.

Ray Train 2.60's elastic policy sizes a group by the cluster's free room, the excluded node's
included: an elastic run whose group only fits with that node waits for the worker-group start
timeout and restarts (docs/cluster.md, "Bad nodes").
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.train.v2._internal.exceptions import (
    WorkerHealthCheckFailedError,
    WorkerHealthCheckTimeoutError,
)
from ray.train.v2._internal.execution.callback import ControllerCallback, WorkerGroupCallback

from resnetctl.tracking.events import NOTE_EVENT

#: Ray's built-in label holding a node's id (`ray.util.placement_group.NODE_ID_LABEL_KEY`).
NODE_ID_LABEL = "ray.io/node-id"

#: What Ray Train reports for a worker whose process died or stopped answering health checks.
PROCESS_FAILURES = (WorkerHealthCheckFailedError, WorkerHealthCheckTimeoutError)


def process_failed(error: BaseException | None) -> bool:
    """Whether a worker's poll error says its process (or its node) failed, rather than the
    training code raising."""
    return isinstance(error, PROCESS_FAILURES)


@dataclass
class NodeFailures:
    """Per-node counts of failed worker groups, and the nodes excluded at `limit` (0: never)."""

    limit: int = 2
    counts: dict[str, int] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)

    def group_failed(self, nodes: Iterable[str]) -> list[str]:
        """Count one failure on each of `nodes` (repeats count once); return the nodes this
        failure excluded."""
        newly = []
        for node in dict.fromkeys(nodes):
            self.counts[node] = self.counts.get(node, 0) + 1
            if self.limit and self.counts[node] >= self.limit and node not in self.excluded:
                self.excluded.append(node)
                newly.append(node)
        return newly

    def selector(self) -> dict[str, str] | None:
        """The label selector that keeps a group off the excluded nodes, or None."""
        if not self.excluded:
            return None
        return {NODE_ID_LABEL: f"!in({','.join(self.excluded)})"}


def failed_nodes(errors: Mapping[int, BaseException | None], nodes: Mapping[int, str]) -> list[str]:
    """The nodes of the ranks whose process failed, from a poll's `rank -> error`."""
    return [
        nodes[rank]
        for rank, error in sorted(errors.items())
        if process_failed(error) and rank in nodes
    ]


class BadNodeCallback(WorkerGroupCallback, ControllerCallback):
    """On the Ray Train controller: exclude from the run a node on which its worker processes
    died `limit` times (`failure.exclude_node_after`)."""

    def __init__(
        self,
        limit: int,
        *,
        tracking_uri: str | None = None,
        run_id: str | None = None,
        progress: Any = None,
    ) -> None:
        self.failures = NodeFailures(limit)
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.progress = progress
        self._nodes: dict[int, str] = {}  # rank -> node id of the running group
        self._ips: dict[str, str] = {}
        self._counted = True  # until a group starts, no poll has anything to count

    def after_worker_group_start(self, worker_group: Any) -> None:
        """Note where each rank runs."""
        self._nodes = {}
        for rank, worker in enumerate(worker_group.get_workers()):
            self._nodes[rank] = worker.metadata.node_id
            self._ips[worker.metadata.node_id] = worker.metadata.node_ip
        self._counted = False

    def after_worker_group_poll_status(self, worker_group_status: Any) -> None:
        """Count the nodes whose workers' processes failed, once per group."""
        if self._counted:
            return
        errors = {rank: s.error for rank, s in worker_group_status.worker_statuses.items() if s}
        nodes = failed_nodes(errors, self._nodes)
        if not nodes:
            return
        self._counted = True  # the controller now fails and restarts the group
        try:
            for node in self.failures.group_failed(nodes):
                self._announce(node)
        except Exception as exc:  # noqa: BLE001 - never stand in the way of the restart
            print(f"resnetctl: bad-node bookkeeping failed: {exc!r}", file=sys.stderr, flush=True)

    def on_controller_start_worker_group(self, *, scaling_config: Any, num_workers: int) -> Any:
        """The label selector for the next group: off the excluded nodes."""
        return self.failures.selector()

    def _announce(self, node: str) -> None:
        count = self.failures.counts[node]
        text = (
            f"node {node[:8]} ({self._ips.get(node, '?')}) excluded from this run: its worker "
            f"processes died in {count} worker groups (failure.exclude_node_after "
            f"{self.failures.limit}); node id {node}"
        )
        # The controller's output reaches the driver, and with it the run's log.
        print(f"resnetctl: {text}", file=sys.stderr, flush=True)
        if self.progress is not None:
            try:
                self.progress.put({"kind": NOTE_EVENT, "line": text}, timeout=10)
            except Exception:  # noqa: BLE001 - the terminal line is optional
                pass
        if self.tracking_uri and self.run_id:
            from mlflow import MlflowClient
            from mlflow.entities import Metric, RunTag

            number = len(self.failures.excluded)
            MlflowClient(self.tracking_uri).log_batch(
                self.run_id,
                metrics=[Metric("excluded_nodes", number, int(time.time() * 1000), 0)],
                tags=[RunTag(f"resnetctl.excluded_node.{number}", text)],
            )
