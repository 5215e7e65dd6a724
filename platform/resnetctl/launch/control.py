"""The run's control actor: how the driver reaches the workers, and what outlives them.

The driver creates one per run, on its own node, taking no CPU, and hands its handle to every
worker. Every rank beats to it once a second (`train.heartbeat`: the evidence `launch.hang`
names a hung rank by), and the answer to each beat carries the driver's stop request (Ctrl-C,
SIGTERM, `resnetctl stop`: a notice like a preemption, so the workers checkpoint at the next
step boundary and end). Rank 0 also tells it every step it finishes. A worker group that dies
loses what it knew, the actor does not: when the group restarts from a checkpoint, rank 0 asks
it how many steps were trained past that checkpoint (the steps redone) and how long ago the
last one finished (the seconds the fault cost).

Rank 0's per-step metrics (`train.log_every_n_steps`) come with its finished steps and go to
MLflow from here, in a batch a second. They stay out of `ray.train.report`: every report makes
all workers meet, Ray Train's controller takes one report per poll, and a report waits behind
a checkpoint still uploading, so a report per step would throttle training or stall it.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from resnetctl.launch.hang import Heartbeats

log = logging.getLogger(__name__)

#: Seconds between two batches of per-step metrics sent to MLflow.
FLUSH_SECONDS = 1.0


class RunControl(Heartbeats):
    """State shared by the driver and the workers of one run (a Ray actor). With an MLflow
    run (`uri`, `run_id`) it logs the per-step metrics rank 0 sends."""

    def __init__(self, uri: str | None = None, run_id: str | None = None) -> None:
        super().__init__()
        self.uri, self.run_id = uri, run_id
        self._pending: list[tuple[int, float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        if uri is not None and run_id is not None:
            threading.Thread(target=self._flush_forever, name="step-metrics", daemon=True).start()
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

    def step_done(self, step: int, metrics: dict[str, Any] | None = None) -> None:
        """Rank 0 finished global step `step` (with its per-step metrics, when due)."""
        now = time.time()
        if step > self.high_water:
            self.high_water, self.high_water_at = step, now
        if metrics:
            with self._lock:
                self._pending.append((step, now, metrics))

    def flush(self) -> int:
        """Log the per-step metrics received so far to MLflow; returns how many steps. A step
        trained again after a restore is logged again: its last value is the one kept."""
        with self._lock:
            pending, self._pending = self._pending, []
        if not pending or self.uri is None or self.run_id is None:
            return 0
        from mlflow import MlflowClient
        from mlflow.entities import Metric

        from resnetctl.spec.metrics import STEP_METRICS

        batch = [
            Metric(key, float(metrics[key]), int(at * 1000), step)
            for step, at, metrics in pending
            for key in STEP_METRICS
            if key in metrics
        ]
        client = MlflowClient(self.uri)
        try:
            for start in range(0, len(batch), 1000):  # MLflow's limit per batch
                client.log_batch(self.run_id, metrics=batch[start : start + 1000])
        except Exception:
            with self._lock:  # kept for the next try (a value logged twice is harmless)
                self._pending = pending + self._pending
            raise
        return len(pending)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(FLUSH_SECONDS)
            try:
                self.flush()
            except Exception as exc:  # noqa: BLE001 - metrics are kept for the next try
                log.warning("per-step metrics not logged yet: %s", exc)

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


def start_control(uri: str | None = None, run_id: str | None = None) -> Any:
    """A `RunControl` actor for this run on the driver's node, needing no CPU: like the
    progress queue, it must outlive any worker node (a preemption takes them away). With an
    MLflow run, per-step metrics are logged into it."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    actor = ray.remote(RunControl).options(num_cpus=0, scheduling_strategy=here)
    return actor.remote(uri, run_id)
