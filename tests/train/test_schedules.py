"""Learning-rate schedules: boundaries, warm-up, cosine end point, plateau, linear scaling."""

from __future__ import annotations

import math
from typing import Any

import pytest

from resnetctl.spec.train import TrainSpec
from resnetctl.train.schedules import SCHEDULES, Warmup, build_schedule

STEPS_PER_EPOCH = 10


def train_spec(**fields: Any) -> TrainSpec:
    """A TrainSpec with the given fields on top of 10 epochs, batch 64, lr 0.1/64."""
    base: dict[str, Any] = {
        "epochs": 10,
        "batch_size_per_worker": 64,
        "base_lr": 0.1,
        "lr_reference_batch": 64,
    }
    return TrainSpec.model_validate({**base, **fields})


def test_registry_covers_every_kind() -> None:
    assert set(SCHEDULES) == {"step", "plateau", "cosine", "constant"}


def test_step_milestones_in_epochs_switch_at_the_epoch_boundary() -> None:
    spec = train_spec(schedule={"kind": "step", "milestones": [3, 6], "gamma": 0.1})
    sched = build_schedule(spec, 0.1, STEPS_PER_EPOCH)
    # Epoch 3 (1-based) ends at step 30: the last step of epoch 3 still uses the peak rate.
    assert sched.lr(29) == pytest.approx(0.1)
    assert sched.lr(30) == pytest.approx(0.01)
    assert sched.lr(59) == pytest.approx(0.01)
    assert sched.lr(60) == pytest.approx(0.001)


def test_step_milestones_in_iterations_match_the_paper() -> None:
    spec = train_spec(
        epochs=None,
        iterations=64_000,
        schedule={"kind": "step", "milestones": [32_000, 48_000], "unit": "iteration"},
    )
    sched = build_schedule(spec, 0.1, 391)
    assert sched.lr(31_999) == pytest.approx(0.1)
    assert sched.lr(32_000) == pytest.approx(0.01)
    assert sched.lr(47_999) == pytest.approx(0.01)
    assert sched.lr(48_000) == pytest.approx(0.001)


def test_linear_warmup_ramps_from_start_factor_to_the_base_rate() -> None:
    spec = train_spec(
        schedule={"kind": "constant"},
        warmup={"length": 2, "unit": "epoch", "start_factor": 0.1, "mode": "linear"},
    )
    sched = build_schedule(spec, 0.4, STEPS_PER_EPOCH)
    assert isinstance(sched, Warmup)
    assert sched.lr(0) == pytest.approx(0.04)
    assert sched.lr(10) == pytest.approx(0.04 + 0.36 * 0.5)
    assert sched.lr(19) < 0.4
    assert sched.lr(20) == pytest.approx(0.4)


def test_constant_warmup_holds_then_jumps_like_resnet110() -> None:
    spec = train_spec(
        epochs=None,
        iterations=1000,
        schedule={"kind": "step", "milestones": [500], "unit": "iteration"},
        warmup={"length": 400, "unit": "iteration", "start_factor": 0.1, "mode": "constant"},
    )
    sched = build_schedule(spec, 0.1, STEPS_PER_EPOCH)
    assert sched.lr(0) == pytest.approx(0.01)
    assert sched.lr(399) == pytest.approx(0.01)
    assert sched.lr(400) == pytest.approx(0.1)
    assert sched.lr(500) == pytest.approx(0.01)


def test_cosine_reaches_min_lr_at_the_end_and_is_monotone() -> None:
    spec = train_spec(schedule={"kind": "cosine", "min_lr": 0.001})
    sched = build_schedule(spec, 0.1, STEPS_PER_EPOCH)
    total = 10 * STEPS_PER_EPOCH
    rates = [sched.lr(s) for s in range(total + 1)]
    assert rates[0] == pytest.approx(0.1)
    assert rates[total // 2] == pytest.approx((0.1 + 0.001) / 2)
    assert rates[total] == pytest.approx(0.001)
    assert all(b <= a for a, b in zip(rates, rates[1:], strict=False))


def test_cosine_decay_starts_after_warmup() -> None:
    spec = train_spec(
        schedule={"kind": "cosine"},
        warmup={"length": 20, "start_factor": 0.5},
    )
    sched = build_schedule(spec, 0.1, STEPS_PER_EPOCH)
    assert sched.lr(20) == pytest.approx(0.1)
    assert sched.lr(100) == pytest.approx(0.0, abs=1e-12)
    assert sched.lr(60) == pytest.approx(0.05)


def _plateau(patience: int = 2, **fields: Any) -> Any:
    """A plateau schedule; without `fields`, torch's ReduceLROnPlateau semantics (raw metric,
    no cooldown, no bound on the drops)."""
    raw = {"window": 1, "cooldown": 0, "max_drops": None}
    spec = train_spec(
        schedule={
            "kind": "plateau",
            "metric": "val_top1_error",
            "patience": patience,
            "factor": 0.1,
            "threshold": 0.0,
            **raw,
            **fields,
        },
    )
    return build_schedule(spec, 0.1, STEPS_PER_EPOCH)


def _drop_epochs(sched: Any, values: list[float]) -> list[int]:
    """1-based epochs after which the rate dropped."""
    drops = []
    for epoch, value in enumerate(values, start=1):
        before = sched.lr(0)
        sched.on_epoch_end({"val_top1_error": value})
        if sched.lr(0) < before:
            drops.append(epoch)
    return drops


# A val error still improving by 0.3 per epoch, with noise of period 4 whose lucky dip no epoch
# beats for the next three: the raw value looks like a plateau, the 4-epoch mean does not.
NOISY = [50.0 - 0.3 * e + (0.0, -2.0, 0.0, 1.0)[e % 4] for e in range(40)]


def test_a_noisy_but_improving_error_drops_the_raw_plateau_but_not_the_smoothed_one() -> None:
    assert _drop_epochs(_plateau(patience=2), NOISY)  # torch's semantics: decays on noise
    assert _drop_epochs(_plateau(patience=2, window=4), NOISY) == []


def test_cooldown_waits_after_a_drop_and_max_drops_bounds_them() -> None:
    flat = [10.0] * 30
    # First epoch sets the best, the second is bad (patience 0): drop; then 3 epochs of rest.
    assert _drop_epochs(_plateau(patience=0, cooldown=3), flat[:12]) == [2, 6, 10]
    assert _drop_epochs(_plateau(patience=0, cooldown=3, max_drops=2), flat) == [2, 6]


def test_the_default_plateau_is_smoothed_cooled_down_and_bounded_by_the_papers_two_drops() -> None:
    spec = train_spec(schedule={"kind": "plateau"})
    sched = build_schedule(spec, 0.1, STEPS_PER_EPOCH)
    assert (spec.schedule.window, spec.schedule.cooldown, spec.schedule.max_drops) == (3, 5, 2)
    assert len(_drop_epochs(sched, [10.0] * 100)) == 2
    assert sched.lr(0) == pytest.approx(0.001)


def test_plateau_divides_after_patience_epochs_without_improvement() -> None:
    sched = _plateau(patience=2)
    sched.on_epoch_end({"val_top1_error": 50.0})
    sched.on_epoch_end({"val_top1_error": 40.0})
    sched.on_epoch_end({"val_top1_error": 41.0})  # 1 bad epoch
    sched.on_epoch_end({"val_top1_error": 40.0})  # 2 bad epochs: equal is no improvement
    assert sched.lr(0) == pytest.approx(0.1)
    sched.on_epoch_end({"val_top1_error": 45.0})  # 3rd bad epoch: more than patience
    assert sched.lr(0) == pytest.approx(0.01)
    sched.on_epoch_end({"val_top1_error": 30.0})
    assert sched.lr(0) == pytest.approx(0.01)


def test_plateau_ignores_nan_metrics() -> None:
    sched = _plateau(patience=0)
    sched.on_epoch_end({"val_top1_error": 10.0})
    sched.on_epoch_end({"val_top1_error": math.nan})
    assert sched.lr(0) == pytest.approx(0.1)


def test_plateau_state_survives_a_state_dict_round_trip() -> None:
    sched = _plateau(patience=1)
    for value in (50.0, 40.0, 41.0, 42.0, 43.0):  # divides once, then one bad epoch pending
        sched.on_epoch_end({"val_top1_error": value})
    assert sched.lr(0) == pytest.approx(0.01)
    fresh = _plateau(patience=1)
    fresh.load_state_dict(sched.state_dict())
    assert fresh.lr(0) == pytest.approx(0.01)
    assert fresh.state_dict() == sched.state_dict()
    for s in (fresh, sched):  # the pending bad epoch carried over: one more divides
        s.on_epoch_end({"val_top1_error": 44.0})
    assert fresh.lr(0) == pytest.approx(sched.lr(0)) == pytest.approx(0.001)


def test_state_of_another_kind_is_rejected() -> None:
    sched = _plateau()
    other = build_schedule(train_spec(schedule={"kind": "constant"}), 0.1, STEPS_PER_EPOCH)
    with pytest.raises(ValueError, match="plateau"):
        other.load_state_dict(sched.state_dict())


def test_linear_scaling_two_workers_of_64_with_base_0_1_per_256() -> None:
    spec = TrainSpec.model_validate(
        {"epochs": 1, "batch_size_per_worker": 64, "base_lr": 0.1, "lr_reference_batch": 256}
    )
    assert spec.scaled_lr(2) == pytest.approx(0.05)
    sched = build_schedule(spec, spec.scaled_lr(2), STEPS_PER_EPOCH)
    assert sched.lr(0) == pytest.approx(0.05)
