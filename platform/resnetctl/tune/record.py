"""The record of a sweep: everything needed to build any trial's spec and to resume the sweep,
written beside Tune's experiment state as JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from resnetctl.spec import JobSpec
from resnetctl.spec.loader import load_spec_text
from resnetctl.storage import StoragePath
from resnetctl.tune.space import SearchSpace, assign, describe_value, trial_assignments

RECORD_FILE = "resnetctl-sweep.json"
TRAIN_RUNS_DIR = "train"


@dataclass
class SweepRecord:
    """A sweep as launched: base spec, search space, objective, scheduler and tracking."""

    name: str
    base_yaml: str
    base_source: str
    space: dict[str, Any]
    metric: str
    mode: str
    scheduler: str
    samples: int
    max_concurrent: int
    max_t: int
    grace_period: int
    reduction_factor: float
    tracking_uri: str
    experiment: str
    storage: str
    parent_run_id: str = ""
    trial_driver: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def search(self) -> SearchSpace:
        """The search space as objects."""
        return SearchSpace.from_dict(self.space)

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
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, storage: StoragePath | str | Path, name: str) -> SweepRecord | None:
        """The record of sweep `name` under `storage`, or None when there is none."""
        path = StoragePath.of(storage) / name / RECORD_FILE
        try:
            record = cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        record.storage = str(storage)  # the storage root may have moved since the launch
        return record

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the trainable receives)."""
        return asdict(self)

    def trial_spec(self, config: Mapping[str, Any]) -> JobSpec:
        """The validated spec of the trial whose Tune config is `config`."""
        return build_trial_spec(self.base_yaml, trial_assignments(config))


def build_trial_spec(
    base_yaml: str, assignments: Mapping[str, Any], source: str = "<trial>"
) -> JobSpec:
    """Apply dotted-path assignments to the resolved base spec and validate the result; errors
    name `source` (the caller says which trial it was)."""
    data = yaml.safe_load(base_yaml)
    for path, value in assignments.items():
        assign(data, path, value)
    return load_spec_text(yaml.safe_dump(data, sort_keys=False), source)


def model_label(spec: JobSpec) -> str:
    """`resnet18-B`, `plain34`, `cifar_resnet20-A`: the resolved network and its shortcut."""
    shortcut = spec.model.shortcut if spec.model.variant == "residual" else None
    return f"{spec.model.name}-{shortcut}" if shortcut else str(spec.model.name)


def trial_label(config: Mapping[str, Any], spec: JobSpec | None = None) -> str:
    """A trial in words: its network when the model is searched (resolved from `spec` when
    given), then every other searched value, e.g. `resnet18-B train.base_lr=0.05`."""
    point = config.get("model") or {}
    parts = []
    if point:
        parts.append(model_label(spec) if spec is not None else str(point.get("label", "")))
    params = config.get("params") or {}
    if spec is not None and not point and any(p.startswith("model") for p in params):
        parts.append(model_label(spec))
    for path, value in params.items():
        if not path.startswith("model"):
            parts.append(f"{path}={describe_value(value)}")
    return " ".join(parts) or "base"
