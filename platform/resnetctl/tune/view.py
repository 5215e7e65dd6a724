"""The driver's live view of a sweep on stderr, and the Tune callback that feeds it and closes
the trials' MLflow child runs.

Tune pickles its callbacks with the experiment (`tuner.pkl`) and unpickles them on
`Tuner.restore`, so the callback holds only plain data; the view it draws into is registered
per process (`active_view`), never stored on the callback.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.live import Live
from rich.table import Table

from resnetctl.tracking import tags
from resnetctl.tune.facts import TrialFacts, TrialFactsCache, trial_state
from resnetctl.tune.record import SweepRecord

_ACTIVE: list[TrialView] = []


def active_view() -> TrialView | None:
    """The view of the sweep running in this process, if any."""
    return _ACTIVE[-1] if _ACTIVE else None


class TrialView:
    """A table of trials (state, depth, shortcut, variant, epoch, metric), redrawn at most once
    a second on a terminal; elsewhere (logs, CI) one line per trial event."""

    def __init__(self, record: SweepRecord, console: Console | None = None):
        self.record = record
        self.console = console or Console(stderr=True)
        self.facts = TrialFactsCache(record)
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
        self.console.print(f"trial {trial.trial_id} {facts.label}: {what}", highlight=False)

    def table(self, trials: Sequence[Any]) -> Table:
        """The live table."""
        metric = self.record.metric
        params = list(self.record.space.domains)
        table = Table(title=f"sweep {self.record.name}", title_justify="left")
        for column in ("trial", "state", "depth", "shortcut", "variant", *params, "epoch", metric):
            table.add_column(column, justify="right" if column in ("depth", "epoch") else "left")
        for trial in trials:
            facts = self.facts.of(trial.trial_id, trial.config)
            result = trial.last_result or {}
            epoch = result.get("epoch")
            planned = facts.epochs
            value = result.get(metric)
            known = bool(facts.model)  # the trial's spec validated
            table.add_row(
                trial.trial_id,
                trial_state(trial.status, epoch, planned),
                str(facts.depth) if known else "?",
                facts.shortcut if known else "?",
                str(facts.variant) if known else "?",
                *(facts.params.get(p, "") for p in params),
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
        self.record = record  # the record's JSON form: what Tune pickles
        self._facts: TrialFactsCache | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"record": self.record, "_facts": None}

    def _cache(self) -> TrialFactsCache:
        if self._facts is None:  # built on first use: unpickled callbacks start without it
            self._facts = TrialFactsCache(SweepRecord.model_validate(self.record))
        return self._facts

    @property
    def sweep(self) -> SweepRecord:
        """The sweep record, typed."""
        return self._cache().record

    def _trial_facts(self, trial: Any) -> TrialFacts:
        return self._cache().of(trial.trial_id, trial.config)

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
        metric = self.sweep.metric
        planned = self._trial_facts(trial).epochs or "?"
        view.event(
            trial,
            f"epoch {result.get('epoch')}/{planned} {metric}={format_metric(result.get(metric))}",
        )
        view.refresh(trials, force=True)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Close the child run: finished, or stopped early by the scheduler."""
        epoch = (trial.last_result or {}).get("epoch")
        planned = self._trial_facts(trial).epochs
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

        record = self.sweep
        client = MlflowClient(record.tracking_uri)
        run = tags.find_child_run(client, record.experiment, record.parent_run_id, trial.trial_id)
        if run is None:
            return
        client.set_tag(run.info.run_id, tags.STOPPED_TAG, str(stopped).lower())
        # The trainable closes its own run when it returns. Runs it left open (it failed, or Tune
        # stopped it, which ASHA also does at the last epoch) are closed here, with their plot.
        if run.info.status != "RUNNING":
            return
        from resnetctl.tracking.run import JobRun

        handle = JobRun(record.tracking_uri, run.info.run_id)
        if status != "FAILED" and handle.logged_epochs():
            handle.log_curves(self._trial_facts(trial).label)
        handle.end(status)
