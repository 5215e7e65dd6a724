"""`set_path` and `with_values`: the one way a `{dotted.path: value}` reaches a spec, for
`--set` and for a sweep's trials."""

from __future__ import annotations

import pytest

from resnetctl.spec import SpecError
from resnetctl.spec.loader import load_spec_text, with_values
from resnetctl.spec.paths import parse_path, set_path
from tests.tune.conftest import TINY_BASE


def test_set_path_writes_nested_and_list_fields_and_creates_sections() -> None:
    data = {"train": {"schedule": {"milestones": [3, 6]}}, "data": {}}
    set_path(data, parse_path("train.schedule.milestones.1"), 8, "here")
    set_path(data, parse_path("train.optimizer.momentum"), 0.8, "here")
    set_path(data, ("data", "source"), {"kind": "digits"}, "here")
    assert data == {
        "train": {"schedule": {"milestones": [3, 8]}, "optimizer": {"momentum": 0.8}},
        "data": {"source": {"kind": "digits"}},
    }


@pytest.mark.parametrize(
    ("path", "field", "message"),
    [
        ("train.epochs.max", "train.epochs.max", "train.epochs is a value, not a section"),
        ("train.milestones.5", "train.milestones.5", "index 5 is outside the list (2 items)"),
        (
            "train.milestones.last",
            "train.milestones.last",
            "train.milestones is a list: address its items by index",
        ),
    ],
)
def test_a_bad_path_is_named(path: str, field: str, message: str) -> None:
    data = {"train": {"epochs": 3, "milestones": [1, 2]}}
    with pytest.raises(SpecError) as caught:
        set_path(data, parse_path(path), 1, "--set x")
    (issue,) = caught.value.issues
    assert (issue.where, issue.field, issue.message) == ("--set x", field, message)
    assert data == {"train": {"epochs": 3, "milestones": [1, 2]}}  # left as it was


def test_with_values_revalidates_the_whole_spec_and_leaves_the_original() -> None:
    base = load_spec_text(TINY_BASE, "base.yaml")
    trial = with_values(base, {"train.optimizer.momentum": 0.5, "data.source.image_size.1": 20})
    assert trial.train.optimizer.momentum == 0.5 and trial.data.source.image_size == (16, 20)
    assert base.train.optimizer.momentum == 0.9 and base.data.source.image_size == (16, 16)
    # A rule across sections is checked again: 3 workers cannot split a global batch of 8.
    with pytest.raises(SpecError) as caught:
        with_values(
            base,
            {"train.batch_size_per_worker": None, "train.global_batch_size": 8,
             "resources.workers": 3},
        )  # fmt: skip
    assert "not divisible by resources.workers 3" in str(caught.value)


def test_with_values_names_an_unknown_field_with_a_suggestion() -> None:
    base = load_spec_text(TINY_BASE, "base.yaml")
    with pytest.raises(SpecError) as caught:
        with_values(base, {"train.optimzer.momentum": 0.5}, "trial x")
    assert str(caught.value) == (
        "trial x: train.optimzer: unknown key 'optimzer'; did you mean 'optimizer'?"
    )


def test_set_and_with_values_agree() -> None:
    base = load_spec_text(TINY_BASE, "base.yaml")
    by_set = load_spec_text(TINY_BASE, "base.yaml", ["train.optimizer.nesterov=true"])
    trial = with_values(base, {"train.optimizer.nesterov": True})
    assert trial.model_dump() == by_set.model_dump() != base.model_dump()
