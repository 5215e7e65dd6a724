"""What the driver knows of each trial from the sweep record alone (its label, network,
planned epochs, searched values), and the names its MLflow child run goes by."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from resnetctl.spec import JobSpec
from resnetctl.tune.record import SweepRecord, trial_label
from resnetctl.tune.space import TrialConfig, describe_value


class TrialFacts(BaseModel):
    """A trial as tables and the MLflow runs show it; only `label` is known for a trial whose
    spec fails (its own error reports why)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    model: str = ""
    depth: int | None = None
    shortcut: str = "-"
    variant: str | None = None
    epochs: int | None = Field(None, description="Planned epochs; None for iteration runs.")
    params: dict[str, str] = Field(default_factory=dict, description="Searched values, as text.")

    @classmethod
    def of_spec(cls, config: TrialConfig, spec: JobSpec) -> TrialFacts:
        """The facts of a trial whose spec is known."""
        return cls(
            label=trial_label(config, spec),
            model=str(spec.model.name),
            depth=spec.model.depth,
            shortcut=spec.model.shortcut or "-",
            variant=spec.model.variant,
            epochs=planned_epochs(spec),
            params={path: describe_value(value) for path, value in config.params.items()},
        )


class TrialFactsCache:
    """Each trial's facts, computed once per trial id (a spec validation each)."""

    def __init__(self, record: SweepRecord):
        self.record = record
        self._cache: dict[str, TrialFacts] = {}

    def of(self, trial_id: str, config: TrialConfig | Mapping[str, Any]) -> TrialFacts:
        """The facts of trial `trial_id` whose Tune config is `config`."""
        if trial_id not in self._cache:
            trial = TrialConfig.model_validate(config)
            try:
                spec = self.record.trial_spec(trial)
            except Exception:  # noqa: BLE001 - a trial whose spec fails reports its own error
                self._cache[trial_id] = TrialFacts(label=trial_label(trial))
            else:
                self._cache[trial_id] = TrialFacts.of_spec(trial, spec)
        return self._cache[trial_id]


def planned_epochs(spec: JobSpec) -> int | None:
    """Epochs a trial runs to the end (None for iteration-length runs: known only from data)."""
    return spec.train.epochs


def trial_state(status: str, epoch: int | None, planned: int | None) -> str:
    """Tune's status in words: a trial terminated before its last epoch was stopped early."""
    if status == "TERMINATED":
        return "stopped" if planned and epoch is not None and epoch < planned else "finished"
    return status.lower()


def trial_number(trial_id: str) -> int:
    """1 for the first trial Tune created: its ids end in a running count (`ab12c_00000`)."""
    tail = trial_id.rsplit("_", 1)[-1]
    return int(tail) + 1 if tail.isdigit() else 0


def trial_run_name(label: str, trial_id: str, numbered: bool) -> str:
    """The MLflow run name of a trial's child run: its label (`resnet34-B`), unique within the
    sweep when each grid point runs once and the points' labels differ; otherwise (`--samples`
    N > 1, `SweepRecord.numbered_runs`) the trial's number tells them apart (`resnet34-B #3`)."""
    return f"{label} #{trial_number(trial_id)}" if numbered else label
