"""The driver's live view of a sweep on stderr, and the Tune callback that feeds it and closes
the trials' MLflow child runs.

Tune pickles its callbacks with the experiment (`tuner.pkl`) and unpickles them on
`Tuner.restore`, so the callback holds only plain data; the view it draws into is registered
per process (`active_view`), never stored on the callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from resnetctl.tune.record import SweepRecord, trial_label
from resnetctl.tune.space import describe_value

STOPPED_TAG = "resnetctl.tune.stopped_early"
_ACTIVE: list[TrialView] = []


def active_view() -> TrialView | None:
    """The view of the sweep running in this process, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


class TrialFacts:
    """Per-trial facts derived from the sweep record, computed once per trial."""

    def __init__(self, record: SweepRecord):
        self.record = record
        self._cache: dict[str, dict[str, Any]] = {}

    def of(self, trial_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """depth, shortcut, variant, planned epochs and searched values of a trial."""
        if trial_id not in self._cache:
            try:
                spec = self.record.trial_spec(config)
            except Exception:  # a trial whose spec fails is reported by its own error
                self._cache[trial_id] = {"label": trial_label(config), "epochs": None}
            else:
                self._cache[trial_id] = {
                    "label": trial_label(config, spec),
                    "model": spec.model.name,
                    "depth": spec.model.depth,
                    "shortcut": spec.model.shortcut or "-",
                    "variant": spec.model.variant,
                    "epochs": planned_epochs(spec),
                    "params": {
                        path: describe_value(value)
                        for path, value in (config.get("params") or {}).items()
                    },
                }
        return self._cache[trial_id]


def planned_epochs(spec: Any) -> int | None:
    """Epochs a trial runs to the end (None for iteration-length runs: known only from data)."""
    return spec.train.epochs


def trial_state(status: str, epoch: int | None, planned: int | None) -> str:
    """Tune's status in words: a trial terminated before its last epoch was stopped early."""
    if status == "TERMINATED":
        return "stopped" if planned and epoch is not None and epoch < planned else "finished"
    return status.lower()


class TrialView:
    """A table of trials (state, depth, shortcut, variant, epoch, metric), redrawn at most once
    a second on a terminal; elsewhere (logs, CI) one line per trial event."""

    def __init__(self, record: SweepRecord, console: Console | None = None):
        self.record = record
        self.console = console or Console(stderr=True)
        self.facts = TrialFacts(record)
        self.live: Live | None = None
        self._last_draw = 0.0
        self._trials: Sequence[Any] = ()

    def __enter__(self) -> TrialView:
        if self.console.is_terminal:
            self.live = Live(console=self.console, auto_refresh=False, transient=False)
            self.live.start()
        _ACTIVE.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.remove(self)
        if self.live is not None:
            self.live.update(self.table(self._trials), refresh=True)
            self.live.stop()

    def refresh(self, trials: Sequence[Any], force: bool = False) -> None:
        """Redraw from Tune's trial objects (throttled unless `force`)."""
        self._trials = list(trials)
        now = time.monotonic()
        if self.live is None or (not force and now - self._last_draw < 1.0):
            return
        self._last_draw = now
        self.live.update(self.table(self._trials), refresh=True)

    def event(self, trial: Any, what: str) -> None:
        """Report a trial event as a line when there is no live table."""
        if self.live is not None:
            return
        facts = self.facts.of(trial.trial_id, trial.config)
        self.console.print(f"trial {trial.trial_id} {facts['label']}: {what}", highlight=False)

    def table(self, trials: Sequence[Any]) -> Table:
        """The live table."""
        metric = self.record.metric
        params = list(self.record.search.domains)
        table = Table(title=f"sweep {self.record.name}", title_justify="left")
        for column in ("trial", "state", "depth", "shortcut", "variant", *params, "epoch", metric):
            table.add_column(column, justify="right" if column in ("depth", "epoch") else "left")
        for trial in trials:
            facts = self.facts.of(trial.trial_id, trial.config)
            result = trial.last_result or {}
            epoch = result.get("epoch")
            planned = facts.get("epochs")
            value = result.get(metric)
            table.add_row(
                trial.trial_id,
                trial_state(trial.status, epoch, planned),
                str(facts.get("depth", "?")),
                str(facts.get("shortcut", "?")),
                str(facts.get("variant", "?")),
                *(facts.get("params", {}).get(p, "") for p in params),
                f"{epoch or 0}/{planned or '?'}",
                format_metric(value),
            )
        return table


def format_metric(value: Any) -> str:
    """A metric for display: 4 significant digits, `-` when missing or not finite."""
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.4g}"
    return "-"


class SweepCallback(Callback):
    """Feeds the live view and closes each trial's MLflow child run when Tune ends the trial:
    a trial that ASHA stops is ended by Tune killing its actor, so the trainable itself never
    gets to close its run."""

    def __init__(self, record: dict[str, Any]):
        self.record = record
        self._facts: TrialFacts | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"record": self.record, "_facts": None}

    def _trial_facts(self, trial: Any) -> dict[str, Any]:
        if self._facts is None:
            self._facts = TrialFacts(SweepRecord(**self.record))
        return self._facts.of(trial.trial_id, trial.config)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        """Redraw the live table (throttled)."""
        view = active_view()
        if view is not None:
            view.refresh(trials)

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Show the trial as running."""
        view = active_view()
        if view is not None:
            view.event(trial, "started")
            view.refresh(trials, force=True)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        """Show the epoch's metric."""
        view = active_view()
        if view is None:
            return
        metric = self.record["metric"]
        planned = self._trial_facts(trial).get("epochs") or "?"
        view.event(
            trial,
            f"epoch {result.get('epoch')}/{planned} {metric}={format_metric(result.get(metric))}",
        )
        view.refresh(trials, force=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Close the child run: finished, or stopped early by the scheduler."""
        epoch = (trial.last_result or {}).get("epoch")
        planned = self._trial_facts(trial).get("epochs")
        stopped = bool(planned and epoch is not None and epoch < planned)
        self._close_child(trial, "KILLED" if stopped else "FINISHED", stopped)
        view = active_view()
        if view is not None:
            view.event(trial, f"stopped early after epoch {epoch}" if stopped else "finished")
            view.refresh(trials, force=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Close the child run as failed."""
        self._close_child(trial, "FAILED", False)
        view = active_view()
        if view is not None:
            view.event(trial, "failed")
            view.refresh(trials, force=True)

    def _close_child(self, trial: Any, status: str, stopped: bool) -> None:
        from mlflow import MlflowClient

        from resnetctl.tune.trainable import find_child_run

        record = self.record
        client = MlflowClient(record["tracking_uri"])
        run = find_child_run(client, record["experiment"], record["parent_run_id"], trial.trial_id)
        if run is None:
            return
        client.set_tag(run.info.run_id, STOPPED_TAG, str(stopped).lower())
        # The trainable closes its own run when it returns. Runs it left open (it failed, or Tune
        # stopped it, which ASHA also does at the last epoch) are closed here, with their plot.
        if run.info.status != "RUNNING":
            return
        from resnetctl.tracking.run import JobRun

        handle = JobRun(record["tracking_uri"], run.info.run_id)
        if status != "FAILED" and handle.logged_epochs():
            handle.log_curves(self._trial_facts(trial)["label"])
        handle.end(status)
