"""The record of a sweep: everything needed to build any trial's spec and to resume the sweep,
written beside Tune's experiment state as JSON (`resnetctl-sweep.json`).

Version 1 (the first sweeps) held the base spec as YAML text (`base_yaml`); it still loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from resnetctl.spec import JobSpec
from resnetctl.spec.loader import with_values
from resnetctl.storage import StoragePath
from resnetctl.tune.space import SearchSpace, TrialConfig, describe_value

RECORD_FILE = "resnetctl-sweep.json"
TRAIN_RUNS_DIR = "train"
SCHEDULERS = ("asha", "fifo")


class SweepError(RuntimeError):
    """The sweep cannot start (tracking store, Ray, an unknown or finished sweep)."""


class SweepRecord(BaseModel):
    """A sweep as launched: base spec, search space, objective, scheduler and tracking."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    version: Literal[2] = 2
    name: str
    base: JobSpec = Field(description="The resolved base spec every trial starts from.")
    base_source: str = Field(description="The file it came from, or `<default spec>`.")
    space: SearchSpace
    metric: str
    mode: Literal["min", "max"]
    scheduler: Literal["asha", "fifo"]
    samples: int = Field(ge=1)
    max_concurrent: int = Field(ge=0, description="0: decided once connected to the cluster.")
    max_t: int = Field(ge=1, description="The longest trial in epochs (ASHA's horizon).")
    grace_period: int = Field(ge=1)
    reduction_factor: float
    tracking_uri: str
    experiment: str
    storage: str
    parent_run_id: str = ""
    numbered_runs: bool = Field(
        False, description="Trial runs need their number to be unique (repeated labels)."
    )
    trial_driver: dict[str, float] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _from_version_1(cls, data: Any) -> Any:
        # Version 1 had no `version` and the base spec as YAML text; the text is the spec's own
        # dump, so it validates as it did then.
        if isinstance(data, dict) and "version" not in data and "base_yaml" in data:
            rest = {k: v for k, v in data.items() if k != "base_yaml"}
            return {**rest, "base": yaml.safe_load(data["base_yaml"])}
        return data

    @property
    def experiment_path(self) -> StoragePath:
        """Tune's experiment directory: `<storage root>/<sweep name>` (a folder or a URI)."""
        return StoragePath.of(self.storage) / self.name

    @property
    def train_storage(self) -> StoragePath:
        """Where each trial's Ray Train run (checkpoints, state) lives: `<experiment>/train`."""
        return self.experiment_path / TRAIN_RUNS_DIR

    def save(self) -> StoragePath:
        """Write the record into the experiment directory."""
        path = self.experiment_path / RECORD_FILE
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, storage: StoragePath | str | Path, name: str) -> SweepRecord | None:
        """The record of sweep `name` under `storage`, or None when there is none."""
        path = StoragePath.of(storage) / name / RECORD_FILE
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        record = cls.model_validate_json(text)
        record.storage = str(storage)  # the storage root may have moved since the launch
        return record

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the trainable and the Tune callback receive)."""
        return self.model_dump(mode="json")

    def trial_spec(self, config: TrialConfig | Mapping[str, Any]) -> JobSpec:
        """The validated spec of the trial whose Tune config is `config`."""
        trial = TrialConfig.model_validate(config)
        return with_values(self.base, trial.assignments(), f"trial {trial_label(trial)}")


def model_label(spec: JobSpec) -> str:
    """`resnet18-B`, `plain34`, `cifar_resnet20-A`: the resolved network and its shortcut."""
    shortcut = spec.model.shortcut if spec.model.variant == "residual" else None
    return f"{spec.model.name}-{shortcut}" if shortcut else str(spec.model.name)


def trial_label(config: TrialConfig | Mapping[str, Any], spec: JobSpec | None = None) -> str:
    """A trial in words: its network when the model is searched (resolved from `spec` when
    given), then every other searched value, e.g. `resnet18-B train.base_lr=0.05`."""
    trial = TrialConfig.model_validate(config)
    parts = []
    if trial.model is not None:
        parts.append(model_label(spec) if spec is not None else trial.model.label)
    elif spec is not None and any(p.startswith("model") for p in trial.params):
        parts.append(model_label(spec))
    for path, value in trial.params.items():
        if not path.startswith("model"):
            parts.append(f"{path}={describe_value(value)}")
    return " ".join(parts) or "base"
