"""The run's control actor: how the driver reaches the workers, and what outlives them.

The driver creates one per run, on its own node, taking no CPU, and hands its handle to every
worker. Every rank beats to it once a second (`train.heartbeat`: the evidence `launch.hang`
names a hung rank by), and the answer to each beat carries the driver's stop request (Ctrl-C,
SIGTERM, `resnetctl stop`: a notice like a preemption, so the workers checkpoint at the next
step boundary and end). Rank 0 also tells it every step it finishes. A worker group that dies
loses what it knew, the actor does not: when the group restarts from a checkpoint, rank 0 asks
it how many steps were trained past that checkpoint (the steps redone) and how long ago the
last one finished (the seconds the fault cost).
"""

from __future__ import annotations

import time
from typing import Any

from resnetctl.launch.hang import Heartbeats


class RunControl(Heartbeats):
    """State shared by the driver and the workers of one run (a Ray actor)."""

    def __init__(self) -> None:
        super().__init__()
        self.stop_reason: str | None = None
        self.high_water = 0  # the highest global step any worker group finished
        self.high_water_at: float | None = None  # when (Unix seconds)
        self.restarts: list[dict[str, Any]] = []

    def request_stop(self, reason: str) -> None:
        """Ask the workers to checkpoint at their next step boundary and end."""
        self.stop_reason = self.stop_reason or reason

    def poll(self) -> dict[str, Any]:
        """What a worker hears from the driver: the stop request, if any."""
        return {"stop": self.stop_reason}

    def beat(self, **beat: Any) -> dict[str, Any]:  # type: ignore[override]
        """A rank's heartbeat (`Heartbeats.beat`); answered with `poll()`."""
        super().beat(**beat)
        return self.poll()

    def step_done(self, step: int) -> None:
        """Rank 0 finished global step `step`."""
        if step > self.high_water:
            self.high_water, self.high_water_at = step, time.time()

    def restored(self, step: int) -> dict[str, Any]:
        """A worker group restored a checkpoint at global step `step`: the steps trained past
        it before (now trained again) and the seconds since the last of them finished."""
        redone = max(0, self.high_water - step)
        since = None if self.high_water_at is None else time.time() - self.high_water_at
        restart = {"step": step, "steps_redone": redone, "seconds_since_last_step": since}
        self.restarts.append(restart)
        return restart

    def summary(self) -> dict[str, Any]:
        """Restarts so far, for the driver's summary."""
        return {
            "restarts": len(self.restarts),
            "steps_redone": sum(r["steps_redone"] for r in self.restarts),
            "high_water": self.high_water,
        }


def start_control() -> Any:
    """A `RunControl` actor for this run on the driver's node, needing no CPU: like the
    progress queue, it must outlive any worker node (a preemption takes them away)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return ray.remote(RunControl).options(num_cpus=0, scheduling_strategy=here).remote()
