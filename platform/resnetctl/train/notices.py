"""Notices a worker hears while it trains: a node of the run being drained or preempted (Ray
Train's preemption watcher marks every worker of the group), and the driver asking the run to
stop (Ctrl-C, SIGTERM, `resnetctl stop`: the run's control actor answers each heartbeat with
it, `train.heartbeat`).

The training thread reads both at every step boundary without waiting for anything: Ray's mark
is an attribute of the worker's context, the stop request the heartbeat's last answer. The ranks
then agree on them (`train.boundary`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """What this worker has heard so far."""

    preempted: bool = False  # a node of the run is being drained
    stop: bool = False  # the driver asked the run to stop
    deadline: float | None = None  # when the drained node goes (Unix seconds), if known
    reason: str = ""


def ray_preemption() -> tuple[float | None, str] | None:
    """Ray Train's preemption info for this worker, without the barrier that
    `ray.train.get_preemption_info()` is (the ranks agree by themselves, asynchronously):
    `(deadline in Unix seconds or None, description)`, or None when no node is drained."""
    try:
        from ray.train.v2._internal.execution.context import get_train_context

        info = get_train_context().preemption_context.preemption_info
    except Exception:  # noqa: BLE001 - not under Ray Train, or another Ray: no notices
        return None
    if info is None:
        return None
    deadline = None if info.deadline_ms is None else info.deadline_ms / 1000.0
    nodes = ", ".join(node[:12] for node in info.preempted_node_ids)
    return deadline, f"node {nodes} is being drained (ranks {info.preempted_ranks})"


class RankNotices:
    """The notices of one rank: Ray's preemption mark, and the stop request the run's control
    actor answered its last heartbeat with (`heart.reply`)."""

    def __init__(self, heart: Any, preemption: Any = ray_preemption) -> None:
        self.heart = heart
        self.preemption = preemption

    def current(self) -> Notice:
        """The latest notice (never blocks)."""
        stop_reason = (getattr(self.heart, "reply", None) or {}).get("stop")
        drained = self.preemption() if self.preemption is not None else None
        reasons = [r for r in (stop_reason, drained[1] if drained else None) if r]
        return Notice(
            preempted=drained is not None,
            stop=stop_reason is not None,
            deadline=drained[0] if drained else None,
            reason="; ".join(reasons),
        )


class NoNotices:
    """Nothing to hear (tests, a single process without Ray)."""

    def current(self) -> Notice:
        """Always the empty notice."""
        return Notice()

    def close(self) -> None:
        """Nothing to stop."""


def now() -> float:
    """Unix seconds (deadlines are wall-clock times)."""
    return time.time()


class RunLedger:
    """Rank 0's side of the run's control actor: every finished step goes to the actor (fire
    and forget: never waited for), with the step's metrics when they are due; a restored worker
    group asks it what the restart cost."""

    def __init__(self, control: Any) -> None:
        self.control = control
        self._metrics: dict[str, Any] | None = None

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        """Send `metrics` (a `StepMetrics` report) with the next finished step."""
        self._metrics = metrics

    def step_done(self, step: int) -> None:
        """Record that global step `step` finished."""
        metrics, self._metrics = self._metrics, None
        self.control.step_done.remote(step, metrics)

    def restored(self, step: int) -> dict[str, Any]:
        """`RunControl.restored`: steps redone and seconds since the last step before."""
        import ray

        return ray.get(self.control.restored.remote(step), timeout=30)
