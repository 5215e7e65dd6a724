"""`train.ema`: the average's arithmetic, its validation metrics, and its resume."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch

from resnetctl.spec.train import EMASpec
from resnetctl.train.ema import WeightsEMA
from resnetctl.train.loop import _report, run_training
from resnetctl.train.metrics import EpochMeter
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import FakeSession, batches, job_spec, tiny_model


def runner(ema: dict[str, Any], n_train: int = 4, epochs: int = 1, **train: Any) -> Runner:
    return Runner(
        job_spec({"epochs": epochs, "ema": ema, **train}),
        model=tiny_model(),
        train_loader=batches(n_train),
        val_loader=batches(2, seed=7),
    )


def snapshot(r: Runner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in r.model.state_dict().items()}


def test_ema_after_k_steps_is_the_closed_form_average() -> None:
    r = runner({"decay": 0.3, "warmup": True}, n_train=3)
    trajectory = [snapshot(r)]  # w0, then the weights after each step
    meter_batches = batches(3)
    for i, (x, y) in enumerate(meter_batches, start=1):
        r.train_step(x, y, 1, i, EpochMeter())
        trajectory.append(snapshot(r))
    # Warm-up decays d_n = min(0.3, (1 + n) / (10 + n)): 0.1, 0.1818..., 0.25.
    d = [min(0.3, (1 + n) / (10 + n)) for n in range(3)]
    assert r.ema is not None and r.ema.updates == 3
    ema = r.ema.module.state_dict()
    for key, w0 in trajectory[0].items():
        if not w0.is_floating_point():  # BN's batch counter is copied, not averaged
            assert torch.equal(ema[key], trajectory[-1][key])
            continue
        # ema_k = (prod_i d_i) w0 + sum_j (1 - d_j) (prod_{i>j} d_i) w_{j+1}
        expected = torch.tensor(d).prod() * w0
        for j in range(3):
            expected = (
                expected + (1 - d[j]) * torch.tensor(d[j + 1 :]).prod() * trajectory[j + 1][key]
            )
        torch.testing.assert_close(ema[key], expected)
    # BN running statistics are averaged too (they moved during training).
    assert not torch.equal(ema["1.running_mean"], trajectory[-1]["1.running_mean"])


def test_every_n_steps_updates_after_every_nth_step_only() -> None:
    r = runner({"every_n_steps": 2}, n_train=5)
    r.train_epoch(1)
    assert r.ema is not None and r.ema.updates == 2


def test_val_ema_metrics_are_those_of_the_averaged_weights() -> None:
    # A decay of nearly 1 without warm-up keeps the average at the initial weights.
    r = runner({"decay": 0.999999, "warmup": False}, epochs=1, base_lr=0.5)
    initial = copy.deepcopy(r.model)
    metrics = r.run_epoch(1)
    reference = Runner(
        job_spec({"epochs": 1}),
        model=initial,
        train_loader=batches(4),
        val_loader=batches(2, seed=7),
    ).validate()
    assert metrics["val_loss_ema"] == pytest.approx(reference["val_loss"], rel=1e-3)
    assert metrics["val_loss_ema"] != pytest.approx(metrics["val_loss"], rel=1e-3)
    assert {"val_top1_error_ema", "val_top5_error_ema"} <= set(metrics)


def test_resume_restores_the_average(tmp_path: Path) -> None:
    ema = {"decay": 0.9, "every_n_steps": 1}
    straight = runner(ema, epochs=2)
    straight.run_epoch(1)
    straight.run_epoch(2)

    first = runner(ema, epochs=2)
    session = FakeSession(tmp_path)
    first.run_epoch(1)
    _report(first, session, {"epoch": 1}, with_checkpoint=True)
    resumed = runner(ema, epochs=2)
    spec = resumed.spec
    # run_training loads the checkpoint and trains epoch 2 only.
    run_training(
        spec,
        Placement(),
        FakeSession(tmp_path / "b", resume_from=session.checkpoints[0]),
        runner=resumed,
    )
    assert resumed.ema is not None and straight.ema is not None
    assert resumed.ema.updates == straight.ema.updates == 8
    for key, value in straight.ema.module.state_dict().items():
        torch.testing.assert_close(resumed.ema.module.state_dict()[key], value)


def test_reset_starts_from_the_given_weights() -> None:
    model = tiny_model()
    ema = WeightsEMA(tiny_model(), EMASpec())
    ema.update(model)
    ema.reset(model)
    assert ema.updates == 0
    for key, value in model.state_dict().items():
        assert torch.equal(ema.module.state_dict()[key], value)
