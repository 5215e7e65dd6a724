"""The sweep record: a strict model that round-trips through its JSON file, and reads the
records of sweeps launched before it was typed (`--resume` of an old sweep)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from resnetctl.tune.facts import TrialFactsCache, trial_run_name
from resnetctl.tune.plan import SweepRequest, plan_sweep
from resnetctl.tune.record import RECORD_FILE, SweepRecord, trial_label
from resnetctl.tune.space import TrialConfig
from tests.tune.conftest import TINY_BASE

V1 = Path(__file__).parent / "data" / "sweep-record-v1.json"


def _v1_record(storage: Path) -> SweepRecord:
    (storage / "v1-sweep").mkdir(parents=True)
    (storage / "v1-sweep" / RECORD_FILE).write_text(V1.read_text())
    record = SweepRecord.load(storage, "v1-sweep")
    assert record is not None
    return record


def test_a_version_1_record_loads_and_builds_its_trials(tmp_path: Path) -> None:
    raw = json.loads(V1.read_text())
    record = _v1_record(tmp_path)
    assert record.storage == str(tmp_path)  # the storage root it was found under
    assert record.parent_run_id == raw["parent_run_id"] and record.notes == raw["notes"]
    assert record.base.name == "tiny-sweep" and record.base.train.base_lr == 0.1
    assert [p.label for p in record.space.models] == [
        "cifar_resnet8", "cifar_plain8", "cifar_resnet14", "cifar_plain14",
    ]  # fmt: skip
    assert {p: d.kind for p, d in record.space.domains.items()} == {
        "train.base_lr": "loguniform",
        "train.optimizer.momentum": "grid",
    }
    assert record.space.size(record.samples) == 8
    # A config as Tune saved it for that sweep: the point's fields with its label.
    config = {
        "model": {"family": "cifar", "depth": 14, "variant": "plain", "shortcut": None,
                  "label": "cifar_plain14"},
        "params": {"train.base_lr": 0.05, "train.optimizer.momentum": 0.8},
    }  # fmt: skip
    spec = record.trial_spec(config)
    assert spec.model.name == "cifar_plain14" and spec.train.base_lr == 0.05
    assert spec.train.optimizer.momentum == 0.8 and spec.search is None


def test_a_record_round_trips_through_its_file(tmp_path: Path) -> None:
    record = _v1_record(tmp_path / "old")
    moved = record.model_copy(update={"storage": str(tmp_path / "new"), "name": "again"})
    (tmp_path / "new" / "again").mkdir(parents=True)
    moved.save()
    saved = json.loads((tmp_path / "new" / "again" / RECORD_FILE).read_text())
    assert saved["version"] == 2 and "base_yaml" not in saved
    assert SweepRecord.load(tmp_path / "new", "again") == moved
    assert SweepRecord.model_validate(moved.as_dict()) == moved  # what the trainable receives
    assert SweepRecord.load(tmp_path / "new", "missing") is None


def test_a_record_refuses_unknown_and_wrong_fields(tmp_path: Path) -> None:
    data = _v1_record(tmp_path).as_dict()
    with pytest.raises(ValidationError, match="trackng_uri"):
        SweepRecord.model_validate({**data, "trackng_uri": "x"})
    with pytest.raises(ValidationError, match="scheduler"):
        SweepRecord.model_validate({**data, "scheduler": "pbt"})


def test_trial_runs_are_named_by_their_trial_and_unique_in_the_sweep(tmp_path: Path) -> None:
    record = _v1_record(tmp_path)
    facts = TrialFactsCache(record)
    names = set()
    for number, point in enumerate(record.space.models):
        config = TrialConfig(model=point, params={"train.optimizer.momentum": 0.9})
        trial_id = f"abc12_{number:05d}"
        names.add(trial_run_name(facts.of(trial_id, config).label, trial_id, record.numbered_runs))
    assert names == {
        f"{net} train.optimizer.momentum=0.9"
        for net in ("cifar_resnet8-A", "cifar_plain8", "cifar_resnet14-A", "cifar_plain14")
    }
    # The model alone names a model-only trial: the issue's `resnet34-B`.
    point = {"family": "imagenet", "depth": 34, "variant": "residual", "shortcut": "B"}
    config = TrialConfig.model_validate({"model": point})
    assert trial_label(config) == "resnet34-B"
    # Repeated samples of one grid point, or grid values that print alike, need the number.
    assert trial_run_name("resnet34-B", "abc12_00000", numbered=True) == "resnet34-B #1"
    assert trial_run_name("resnet34-B", "abc12_00003", numbered=True) == "resnet34-B #4"


def test_runs_are_numbered_when_labels_could_repeat(tmp_path: Path) -> None:
    text = TINY_BASE + "search:\n  train.base_lr: {grid: [0.1, 0.2]}\n"
    assert not _plan(tmp_path, text).numbered_runs
    assert _plan(tmp_path, text, samples=2).numbered_runs
    alike = TINY_BASE + "search:\n  train.base_lr: {grid: [0.100001, 0.1000002]}\n"
    assert _plan(tmp_path, alike).numbered_runs  # both print as 0.1


def test_facts_of_a_trial_whose_spec_fails_keep_its_label(tmp_path: Path) -> None:
    facts = TrialFactsCache(_v1_record(tmp_path)).of("t1", {"params": {"train.base_lr": 500.0}})
    assert facts.label == "train.base_lr=500" and facts.model == "" and facts.epochs is None


def _plan(tmp_path: Path, text: str, **options: object) -> SweepRecord:
    spec = tmp_path / "base.yaml"
    spec.write_text(text)
    return plan_sweep(SweepRequest(file=spec, **options))  # type: ignore[arg-type]


def test_the_trial_name_creators_that_old_sweeps_pickled_still_unpickle() -> None:
    import pickle
    from types import SimpleNamespace

    from resnetctl.tune import run

    # Tune's `tuner.pkl` of a sweep launched before the split names them by module and name.
    for old, new in (("_trial_name", run.trial_name), ("_trial_dirname", run.trial_dirname)):
        assert pickle.loads(f"cresnetctl.tune.sweep\n{old}\n.".encode()) is new
    trial = SimpleNamespace(trial_id="ab12c_00001", config={"params": {"train.base_lr": 0.05}})
    assert run.trial_name(trial) == "train.base_lr=0.05_ab12c_00001"
    assert run.trial_dirname(trial) == "ab12c_00001"
