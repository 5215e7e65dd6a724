"""The Runner in one process: epoch metrics, run length, progress, non-finite losses."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from resnetctl.spec.metrics import EPOCH_METRICS
from resnetctl.train.runner import NonFiniteLossError, Runner
from tests.train._helpers import batches, job_spec, tiny_model


def runner(
    train: dict[str, Any] | None = None,
    n_train: int = 4,
    model: nn.Module | None = None,
    **loaders: Any,
) -> Runner:
    return Runner(
        job_spec(train=train),
        model=model or tiny_model(),
        train_loader=loaders.get("train_loader", batches(n_train)),
        val_loader=loaders.get("val_loader", batches(2, seed=7)),
    )


def test_run_epoch_reports_exactly_the_epoch_metrics_and_learns() -> None:
    r = runner({"epochs": 30, "base_lr": 0.05, "schedule": {"kind": "constant"}}, n_train=2)
    first = r.run_epoch(1)
    assert tuple(first) == EPOCH_METRICS
    for epoch in range(2, 31):
        last = r.run_epoch(epoch)
    assert last["train_loss"] < first["train_loss"]
    assert 0.0 <= last["train_top1_error"] <= 100.0
    assert last["images_per_second"] > 0 and last["epoch_seconds"] > 0
    assert (r.epoch, r.step, r.finished) == (30, 60, True)


def test_lr_metric_follows_the_schedule_and_linear_scaling() -> None:
    r = runner(
        {
            "epochs": 3,
            "base_lr": 0.4,
            "lr_reference_batch": 16,
            "schedule": {"kind": "step", "milestones": [1], "gamma": 0.5},
        }
    )
    assert r.peak_lr == pytest.approx(0.4 * 8 / 16)
    assert r.run_epoch(1)["lr"] == pytest.approx(0.2)
    assert r.run_epoch(2)["lr"] == pytest.approx(0.1)
    assert r.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_iteration_runs_stop_at_the_step_inside_the_last_epoch() -> None:
    r = runner({"epochs": None, "iterations": 6}, n_train=4)
    assert (r.steps_per_epoch, r.total_steps, r.last_epoch) == (4, 6, 2)
    r.run_epoch(1)
    r.run_epoch(2)
    assert (r.step, r.finished) == (6, True)


def test_int32_column_labels_from_dali_are_accepted() -> None:
    # DALI's labels are int32 of shape (N, 1): the epoch is the one of int64 labels of shape N.
    data = [(x, y.to(torch.int32).view(-1, 1)) for x, y in batches(2)]
    torch.manual_seed(0)
    metrics = runner(train_loader=data, val_loader=data).run_epoch(1)
    torch.manual_seed(0)
    expected = runner(train_loader=batches(2), val_loader=batches(2)).run_epoch(1)
    for key in ("train_loss", "train_top1_error", "val_loss", "val_top1_error", "val_top5_error"):
        assert metrics[key] == expected[key], key
    assert 0.0 < metrics["val_top1_error"] < 100.0  # labels compared, not all right or wrong


def test_progress_callback_gets_steps_of_the_epoch() -> None:
    updates: list[dict[str, Any]] = []
    r = runner(n_train=5)
    r.train_epoch(1, on_step=updates.append, every=2)
    assert [u["step"] for u in updates] == [1, 2, 4, 5]  # the first step, every 2nd, the last
    assert set(updates[0]) == {
        "epoch",
        "step",
        "steps",
        "global_step",
        "images_per_second",
        "loss",
        "lr",
    }
    assert updates[-1]["steps"] == 5 and updates[-1]["global_step"] == 5


class NaNAfter(nn.Module):
    """Wraps a model and returns NaN logits from the `start`-th forward in training mode on."""

    def __init__(self, start: int, stop: int | None = None) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.calls, self.start, self.stop = 0, start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.start and (self.stop is None or self.calls < self.stop):
                return out * float("nan")
        return out


def test_non_finite_loss_raises_naming_epoch_and_step() -> None:
    r = runner({"max_nonfinite_steps": 1}, n_train=4, model=NaNAfter(start=2))
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 3 \(global step 3\)") as info:
        r.run_epoch(1)
    assert (info.value.epoch, info.value.step) == (1, 3)


def test_tolerated_non_finite_steps_are_skipped_without_touching_weights() -> None:
    model = NaNAfter(start=1, stop=2)  # only the first step is NaN
    r = runner({"max_nonfinite_steps": 1}, n_train=1, model=model)
    before = [p.detach().clone() for p in model.parameters()]
    metrics = r.train_epoch(1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert math.isnan(metrics["train_loss"])  # no finite step: NaN, not 0


def test_huge_learning_rate_diverges_into_non_finite_error() -> None:
    r = runner({"base_lr": 100.0, "lr_reference_batch": 1, "epochs": 50}, n_train=4)
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch"):
        for epoch in range(1, 51):
            r.run_epoch(epoch)


def test_bf16_autocast_trains_on_cpu() -> None:
    torch.manual_seed(0)
    r = runner({"precision": "bf16", "channels_last": True})
    dtypes: set[torch.dtype] = set()
    conv = next(m for m in r.model.modules() if isinstance(m, nn.Conv2d))
    conv.register_forward_hook(lambda module, args, out: dtypes.add(out.dtype))
    metrics = r.run_epoch(1)
    assert dtypes == {torch.bfloat16}  # training and validation ran under bf16 autocast
    torch.manual_seed(0)
    expected = runner({"channels_last": True}).run_epoch(1)
    # bf16 rounds the fp32 run's numbers, by much less than they differ between recipes.
    for key in ("train_loss", "val_loss"):
        assert metrics[key] != expected[key], key
        assert metrics[key] == pytest.approx(expected[key], rel=2e-2), key
