"""The search space and the checks that run before any trial: no Ray, no training."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnetctl.spec import SpecError
from resnetctl.spec.loader import load_spec_text, with_values
from resnetctl.tune.plan import SweepRequest, default_spec_text, plan_sweep
from resnetctl.tune.space import (
    SearchSpace,
    TrialConfig,
    model_points,
    parse_choices,
    parse_depths,
    resolve_family,
    to_tune,
)
from tests.tune.conftest import TINY_BASE

SEARCH_LINE = TINY_BASE.count("\n") + 2  # the first entry under `search:`


def _search(entries: str) -> SearchSpace:
    spec = load_spec_text(TINY_BASE + "search:\n" + entries, "spec.yaml")
    return SearchSpace(domains=spec.search or {})


def test_search_section_domains_and_their_tune_objects() -> None:
    space = _search(
        "  train.base_lr: {loguniform: [0.01, 0.3]}\n"
        "  train.optimizer.momentum: {uniform: [0.8, 0.95]}\n"
        "  train.label_smoothing: {choice: [0.0, 0.1]}\n"
        "  train.epochs: {grid: [1, 2]}\n"
    )
    domains = space.domains
    assert (domains["train.base_lr"].kind, domains["train.base_lr"].values) == (
        "loguniform",
        (0.01, 0.3),
    )
    assert to_tune(domains["train.epochs"]) == {"grid_search": [1, 2]}
    sampled = to_tune(domains["train.base_lr"]).sample()
    assert 0.01 <= sampled <= 0.3
    assert space.size(samples=3) == 6


@pytest.mark.parametrize(
    ("entry", "field", "message"),
    [
        ("train.base_lr: {logarithmic: [0.1, 1]}", "search.train.base_lr",
         "unknown search kind 'logarithmic'"),
        ("train.base_lr: {loguniform: [0.0, 1]}", "search.train.base_lr", "must be > 0"),
        ("train.base_lr: {uniform: [1, 0.5]}", "search.train.base_lr", "need low < high"),
        ("train.base_lr: {uniform: [1]}", "search.train.base_lr.uniform", "at least 2 items"),
        ("train.base_lr: {grid: []}", "search.train.base_lr.grid", "at least 1 item"),
        ("train.base_lr: 0.1", "search.train.base_lr", "expected one of"),
        ("train.base_lr: {grid: [1], choice: [2]}", "search.train.base_lr", "expected one of"),
        ("train..lr: {grid: [1]}", "search.train..lr", "not a dotted field path"),
    ],
)  # fmt: skip
def test_bad_search_entries_name_the_field_and_line(entry: str, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        _search(f"  {entry}\n")
    (issue,) = caught.value.issues
    assert issue.where == f"spec.yaml:{SEARCH_LINE}"
    assert issue.field == field and message in issue.message


def test_a_spec_with_search_trains_without_it() -> None:
    spec = load_spec_text(TINY_BASE + "search:\n  train.base_lr: {grid: [0.1, 0.2]}\n", "f.yaml")
    assert spec.search is not None and "search" not in spec.model_dump()
    trial = with_values(spec, {"train.base_lr": 0.2})
    assert trial.search is None and trial.train.base_lr == 0.2 and spec.train.base_lr == 0.1


def test_flags_parse_and_reject_unknown_values() -> None:
    assert parse_depths("18, 34,50,18") == [18, 34, 50]
    assert parse_choices("a,B", "--shortcuts", ("A", "B", "C")) == ["A", "B"]
    with pytest.raises(SpecError, match="unknown value 'D'; use A, B, C"):
        parse_choices("A,D", "--shortcuts", ("A", "B", "C"))
    with pytest.raises(SpecError, match="not a depth: x"):
        parse_depths("18,x")
    with pytest.raises(SpecError, match="the list is empty"):
        parse_depths(" , ")


def test_imagenet_depths_switch_a_cifar_base_and_mixed_lists_fail() -> None:
    assert resolve_family([20, 56], "cifar") == ("cifar", None)
    assert resolve_family([20, 50], "cifar") == ("cifar", None)  # 50 = 6*8+2 is CIFAR too
    family, note = resolve_family([18, 34, 50], "cifar")
    assert family == "imagenet" and "18, 34 are not CIFAR depths" in note
    with pytest.raises(SpecError, match="18 exist only as ImageNet nets and 20 only as CIFAR"):
        resolve_family([18, 20], "cifar")
    with pytest.raises(SpecError, match="no network has depth 19: CIFAR nets have depth 6n\\+2"):
        resolve_family([18, 19], "imagenet")


def test_plain_variant_appears_once_whatever_the_shortcuts() -> None:
    base = {"family": "cifar", "depth": 20, "variant": "residual", "shortcut": None}
    points, _ = model_points(base, [20, 32], ["A", "B"], ["residual", "plain"])
    assert [p.label for p in points] == [
        "cifar_resnet20-A", "cifar_resnet20-B", "cifar_plain20",
        "cifar_resnet32-A", "cifar_resnet32-B", "cifar_plain32",
    ]  # fmt: skip
    base = load_spec_text(default_spec_text())
    spec = with_values(base, TrialConfig(model=points[2].as_config()).assignments())
    assert spec.model.name == "cifar_plain20" and spec.model.shortcut is None


def test_search_section_keeps_the_line_numbers_of_other_keys() -> None:
    text = "search:\n  train.epochs: {grid: [1, 2]}\n" + TINY_BASE
    with pytest.raises(SpecError) as caught:
        load_spec_text(text.replace("  epochs: 1", "  epochs: 0"), "f.yaml")
    assert str(caught.value) == (  # line 9 of TINY_BASE, after the 2 lines of search
        "f.yaml:11: train.epochs: Input should be greater than or equal to 1 (got 0)"
    )


def _plan(tmp_path: Path, text: str = TINY_BASE, **kwargs) -> object:
    spec = tmp_path / "base.yaml"
    spec.write_text(text)
    return plan_sweep(SweepRequest(file=spec, **kwargs))


def test_trial_specs_are_validated_before_anything_starts(tmp_path: Path) -> None:
    text = TINY_BASE + "search:\n  train.base_lr: {grid: [0.1, 500]}\n"
    with pytest.raises(SpecError) as caught:
        _plan(tmp_path, text)
    assert "train.base_lr" in str(caught.value) and "500" in str(caught.value)


def test_a_plan_records_space_objective_and_capacity(tmp_path: Path) -> None:
    text = TINY_BASE + "search:\n  train.base_lr: {loguniform: [0.01, 0.3]}\n"
    record = _plan(tmp_path, text, depths="8,14", variants="residual,plain", samples=2)
    assert record.metric == "val_top1_error" and record.mode == "min"
    assert record.space.size(record.samples) == 8
    assert record.max_t == 1 and record.max_concurrent == len(os.sched_getaffinity(0))
    assert record.tracking_uri == f"sqlite:///{Path.cwd() / 'mlflow.db'}"
    spec = record.trial_spec(
        {"model": record.space.models[3].as_config(), "params": {"train.base_lr": 0.05}}
    )
    assert spec.model.name == "cifar_plain14" and spec.train.base_lr == 0.05


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--depths", "18,19"], "--depths: no network has depth 19"),
        (["--depths", "20", "--shortcuts", "A,Z"], "--shortcuts: unknown value 'Z'"),
        (["--variants", "resnet"], "--variants: unknown value 'resnet'"),
        ([], "the search space is empty"),
        (["--depths", "20", "--metric", "val_top1_acc"], "trials do not report 'val_top1_acc'"),
        (["--depths", "20", "--set", "train.epochs=0"], "train.epochs"),
        (["--depths", "20", "--scheduler", "pbt"], "unknown scheduler 'pbt'"),
        (["--depths", "20", "--grace-period", "5"], "--grace-period"),
        (["--resume", "nothing-here"], "no sweep named 'nothing-here'"),
    ],
)
def test_bad_input_exits_2_before_any_trial(tune_cli, tmp_path: Path, args, message) -> None:
    outcome = tune_cli(*args)
    assert outcome.code == 2, outcome.stderr
    assert message in outcome.stderr and "error:" in outcome.stderr
    # Nothing started: no tracking store, no sweep directory.
    assert not (tmp_path / "mlflow.db").exists()
    assert not any(Path(os.environ["RESNETCTL_STORAGE"]).iterdir())


def test_asha_horizon_of_iteration_length_trials_is_counted_in_epochs(tmp_path: Path) -> None:
    # 64 training images, batch 8, one worker: 8 steps an epoch, so 20 iterations end in epoch 3.
    text = TINY_BASE.replace("  epochs: 1\n", "  iterations: 20\n")
    assert text != TINY_BASE
    record = _plan(tmp_path, text, depths="8")
    assert record.max_t == 3
