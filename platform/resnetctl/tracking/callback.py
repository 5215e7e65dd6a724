"""Per-epoch metrics into MLflow, from the Ray Train controller.

The controller sees every `ray.train.report` once, after all ranks reported, so it is the one
writer of per-epoch metrics; workers never hold MLflow credentials or connections. It also tells
the driver's progress view that an epoch is done, through the job's progress queue.

An epoch is logged when its report arrives. After a restore from an older checkpoint (a worker
group restarted by Ray Train, `--resume`, a restart in the middle of an epoch) the epochs
trained again are reported again, and logged again: the values of the weights the run went on
with replace the discarded attempt's. MLflow keeps every value logged at a step; the later
timestamp marks the one that counts, and `tracking.names.history`, through which resnetctl
reads metrics back, keeps only the last value of each step (docs/mlflow.md). Per-step metrics
(`train.log_every_n_steps`) follow the same rule; they reach MLflow from the run's control actor
(`launch.control`), not through the reports. Restores and checkpoints taken on a notice are
counted here (`restarts`, `steps_redone`, `restart_seconds`, `preemptions`).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from ray.train import UserCallback

from resnetctl.spec.metrics import (
    CHECKPOINT_REASON_KEY,
    CHECKPOINT_STEP_KEY,
    EPOCH_METRICS,
    LOGGED_METRICS,
    NOTICE_KEY,
    RESTORE_KEY,
    STEP_REPORT_KEY,
    URGENT_KEY,
)
from resnetctl.tracking.datasets import DATASET_REPORT_KEY, log_datasets
from resnetctl.tracking.events import EPOCH_EVENT, NOTE_EVENT, WORKER_ERROR_EVENT
from resnetctl.tracking.labels import NUM_CLASSES_PARAM
from resnetctl.tracking.names import to_mlflow

log = logging.getLogger(__name__)


class EpochMetricsCallback(UserCallback):
    """Log rank 0's epoch metrics with the epoch as step, every time an epoch is reported (a
    report of an epoch logged before replaces it); and put an epoch event with them into
    `progress` (a `ray.util.queue.Queue`), if given."""

    def __init__(self, uri: str, run_id: str, progress: Any = None):
        self.uri = uri
        self.run_id = run_id
        self.progress = progress
        self._client: Any = None
        self._last_time = 0
        # Fault counts, cumulative over the run (read back from MLflow on a `--resume`).
        self._faults: dict[str, float] | None = None
        # The worker group's size at its last report (every rank reports): an elastic run's
        # restore with another size is a resize.
        self._workers: int | None = None

    def after_report(
        self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any
    ) -> None:
        """Called by Ray Train after every rank reported an epoch."""
        from mlflow import MlflowClient
        from mlflow.entities import Metric, RunTag

        if metrics and STEP_REPORT_KEY in metrics[0]:
            return  # per-step metrics go to MLflow from the run's control actor
        before, self._workers = self._workers, len(metrics) or self._workers
        if metrics and RESTORE_KEY in metrics[0]:
            self._log_restore(metrics[0])
            if before is not None and before != len(metrics):
                self._log_resize(int(metrics[0][RESTORE_KEY]), before, metrics[0])
            return
        if metrics and CHECKPOINT_STEP_KEY in metrics[0]:
            self._log_step_checkpoint(metrics[0])
            return
        if not metrics or "epoch" not in metrics[0]:
            return
        epoch = int(metrics[0]["epoch"])
        self._announce(epoch, metrics[0])
        if self._client is None:
            self._client = MlflowClient(self.uri)
        now = self._timestamp()
        # Under their MLflow names, with the unit (`tracking.names`).
        logged = to_mlflow(metrics[0], LOGGED_METRICS)
        batch = [Metric(key, value, now, epoch) for key, value in logged.items()]
        checksums = [float(m["param_checksum"]) for m in metrics if "param_checksum" in m]
        if len(checksums) == len(metrics) > 0:
            # Non-zero means the DDP replicas diverged: their gradients were not averaged.
            spread = max(checksums) - min(checksums)
            batch.append(Metric("ranks_param_max_diff", spread, now, epoch))
        nodes = sorted({str(m["node_id"]) for m in metrics if m.get("node_id")})
        tags = [RunTag("ray.worker_nodes", ",".join(nodes))] if nodes else []
        self._client.log_batch(self.run_id, metrics=batch, tags=tags)
        if metrics[0].get(DATASET_REPORT_KEY):
            self._log_data(metrics[0][DATASET_REPORT_KEY])

    def _log_data(self, described: dict[str, Any]) -> None:
        """The datasets rank 0 trained on, and the class count the spec left to the data."""
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException

        try:
            log_datasets(self._client, self.run_id, described)
            params = self._client.get_run(self.run_id).data.params
            classes = described.get("train", {}).get("classes")
            if classes and NUM_CLASSES_PARAM not in params:
                self._client.log_batch(self.run_id, params=[Param(NUM_CLASSES_PARAM, str(classes))])
        except MlflowException as exc:  # descriptive only: never fail the run for it
            log.warning("datasets not logged: %s", str(exc).splitlines()[0])

    def _fault_counts(self) -> dict[str, float]:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(self.uri)
        if self._faults is None:
            logged = self._client.get_run(self.run_id).data.metrics
            self._faults = {k: float(logged.get(k, 0.0)) for k in ("preemptions", "restarts")}
            self._faults["steps_redone"] = float(logged.get("steps_redone", 0.0))
            self._faults["resizes"] = float(logged.get("resizes", 0.0))
        return self._faults

    def _log_faults(self, step: int, values: dict[str, float], tags: dict[str, str]) -> None:
        from mlflow.entities import Metric, RunTag

        now = self._timestamp()
        self._client.log_batch(
            self.run_id,
            metrics=[Metric(key, value, now, step) for key, value in values.items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
        )

    def _log_restore(self, report: dict[str, Any]) -> None:
        """A worker group restored a checkpoint: count the restart and what it cost."""
        step = int(report[RESTORE_KEY])
        faults = self._fault_counts()
        faults["restarts"] += 1
        redone = int(report.get("steps_redone", 0))
        faults["steps_redone"] += redone
        values = {"restarts": faults["restarts"], "steps_redone": faults["steps_redone"]}
        text = f"restarted from the checkpoint at step {step}"
        if "restart_seconds" in report:
            values["restart_seconds"] = float(report["restart_seconds"])
            text += (
                f": {redone} step(s) trained again, {report['restart_seconds']:.0f} s since "
                "the last step before the fault"
            )
        self._log_faults(step, values, {"resnetctl.last_restart": text})
        self._note(text)

    def _log_resize(self, step: int, before: int, report: dict[str, Any]) -> None:
        """An elastic run's group restarted with another number of workers: a tag per resize
        (`resnetctl.resize.<n>`) saying when, from and to how many, and what it trains with."""
        faults = self._fault_counts()
        faults["resizes"] = faults.get("resizes", 0.0) + 1
        after = int(report.get("workers", self._workers or 0))
        text = f"step {step}: {before} -> {after} workers"
        if "global_batch" in report and "peak_lr" in report:
            text += (
                f" ({report['global_batch']} images per step, peak lr {report['peak_lr']:.6g})"
            )
        number = int(faults["resizes"])
        self._log_faults(step, {"resizes": faults["resizes"]}, {f"resnetctl.resize.{number}": text})
        self._note(f"resized: {text}")

    def _log_step_checkpoint(self, report: dict[str, Any]) -> None:
        """A checkpoint from the middle of an epoch: count a notice, tell the terminal about
        the ones that are not routine."""
        step = int(report[CHECKPOINT_STEP_KEY])
        reason = str(report.get(CHECKPOINT_REASON_KEY, ""))
        if report.get(NOTICE_KEY):
            faults = self._fault_counts()
            faults["preemptions"] += 1
            self._log_faults(
                step, {"preemptions": faults["preemptions"]}, {"resnetctl.last_notice": reason}
            )
        if report.get(URGENT_KEY):
            self._note(f"checkpoint at step {step}: {reason}")

    def _note(self, text: str) -> None:
        log.warning("%s", text)
        self._put({"kind": NOTE_EVENT, "line": text})

    def _timestamp(self) -> int:
        """Milliseconds now, and later than any this callback logged before: a replayed
        epoch's value must come after the one it replaces even within one millisecond."""
        self._last_time = max(int(time.time() * 1000), self._last_time + 1)
        return self._last_time

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        """Called by Ray Train when workers failed: the driver says so on the terminal (the
        traceback is in the job's log) before the group restarts or the run fails."""
        if worker_exceptions:
            ranks = sorted(worker_exceptions)
            error = _describe(worker_exceptions[ranks[0]])
            self._put({"kind": WORKER_ERROR_EVENT, "ranks": ranks, "error": error})

    def _announce(self, epoch: int, metrics: dict[str, Any]) -> None:
        event = {"kind": EPOCH_EVENT, "epoch": epoch}
        event.update((key, float(metrics[key])) for key in EPOCH_METRICS if key in metrics)
        self._put(event)

    def _put(self, event: dict[str, Any]) -> None:
        if self.progress is None:
            return
        try:
            # Waits briefly for room: unlike a step, these events must not be dropped.
            self.progress.put(event, timeout=10)
        except Exception:  # noqa: BLE001 - the view is optional, the run and its metrics are not
            pass


def _describe(error: BaseException, limit: int = 300) -> str:
    # Ray wraps worker exceptions; the innermost message is the one a user can act on. Ray
    # Train's wrapper of a user's exception reads as its traceback, whose last line names it.
    while error.__cause__ is not None:
        error = error.__cause__
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    named = _TRACEBACK_END.match(last)
    text = f"{named[1]}: {named[2]}" if named else f"{type(error).__name__}: {last}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


_TRACEBACK_END = re.compile(r"^(?:\w+\.)*(\w+(?:Error|Exception|Interrupt|Exit)): (.*)$")
