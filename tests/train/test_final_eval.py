"""`train.final_eval`: after the last epoch the best checkpoint is evaluated once with the
paper's 10-crop protocol and reported as its own metrics with the last epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from resnetctl.spec.metrics import EPOCH_METRICS, FINAL_EVAL_METRICS
from resnetctl.train.checkpoint import load_checkpoint, read_meta
from resnetctl.train.final_eval import BestWeights
from resnetctl.train.loop import run_training
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import (
    FINAL_EVAL,
    IMAGENET_DATA,
    NUM_CLASSES,
    FakeSession,
    batches,
    job_spec,
    ten_crop_batches,
    tiny_model,
)


def _run(tmp: Path, epochs: int = 4, resume_from: Path | None = None, **train: Any) -> FakeSession:
    spec = job_spec(
        train={"epochs": epochs, "base_lr": 0.5, **FINAL_EVAL, **train},
        data=IMAGENET_DATA,
        checkpoint={"every_n_epochs": 1},
    )
    runner = Runner(
        spec,
        model=tiny_model(),
        train_loader=batches(3),
        val_loader=batches(2, seed=9),
        final_eval_loader=ten_crop_batches(2),
    )
    session = FakeSession(tmp, resume_from=resume_from)
    run_training(spec, Placement(), session, runner=runner)
    return session


def _ten_crop_top1_error(weights: dict[str, torch.Tensor], data: list[Any]) -> float:
    model = tiny_model()
    model.load_state_dict(weights)
    model.eval()
    wrong = total = 0
    with torch.no_grad():
        for images, labels in data:
            n = images.shape[0]
            probs = model(images.flatten(0, 1)).softmax(-1).view(n, 10, -1).mean(1)
            wrong += int((probs.argmax(-1) != labels.view(-1)).sum())
            total += n
    return 100.0 * wrong / total


def test_the_best_checkpoint_is_evaluated_with_ten_crops_and_reported_with_the_last_epoch(
    tmp_path: Path,
) -> None:
    session = _run(tmp_path / "a")
    reports = [m for m, _, _ in session.reports]
    for metrics in reports[:-1]:
        assert set(metrics) == {*EPOCH_METRICS, "epoch", "step", "param_checksum"}
    last = reports[-1]
    assert set(FINAL_EVAL_METRICS) <= set(last)
    errors = [m["val_top1_error"] for m in reports]
    best_epoch = errors.index(min(errors)) + 1  # the first of equals, like Ray's ranking
    assert last["final_eval_epoch"] == best_epoch
    best_weights = load_checkpoint(session.checkpoints[best_epoch - 1])[0]["model"]
    expected = _ten_crop_top1_error(best_weights, ten_crop_batches(2))
    assert last["val_top1_error_10crop"] == pytest.approx(expected)
    assert read_meta(session.checkpoints[-1])["metrics"]["val_top1_error_10crop"] == (
        pytest.approx(expected)
    )


def test_a_resumed_run_evaluates_the_best_of_the_whole_run(tmp_path: Path) -> None:
    full = _run(tmp_path / "full")
    resumed = _run(tmp_path / "resumed", resume_from=full.checkpoints[1])
    final = {k: full.reports[-1][0][k] for k in FINAL_EVAL_METRICS}
    assert {k: resumed.reports[-1][0][k] for k in FINAL_EVAL_METRICS} == pytest.approx(final)


def test_best_weights_travel_in_a_later_checkpoint_and_only_once() -> None:
    spec = job_spec(train=FINAL_EVAL, data=IMAGENET_DATA)
    best = BestWeights(spec)
    good, worse = tiny_model(), tiny_model()
    assert best.offer(1, {"val_top1_error": 10.0}, good)
    assert not best.offer(2, {"val_top1_error": 20.0}, worse)
    assert not best.offer(3, {"val_top1_error": math.nan}, worse)
    assert best.state_dict(1)["weights"] is None  # the checkpoint's own model
    later = best.state_dict(2)
    restored = BestWeights(spec)
    restored.load_state_dict(later, worse.state_dict())
    assert (restored.epoch, restored.value) == (1, 10.0)
    assert restored.weights is not None
    for key, value in good.state_dict().items():
        assert torch.equal(restored.weights[key], value)
    own = BestWeights(spec)
    own.load_state_dict(best.state_dict(1), good.state_dict())
    assert own.epoch == 1 and own.weights is not None


def test_no_final_eval_unless_asked(tmp_path: Path) -> None:
    spec = job_spec(train={"epochs": 1}, data=IMAGENET_DATA)
    runner = Runner(spec, model=tiny_model(), train_loader=batches(1), val_loader=batches(1))
    session = FakeSession(tmp_path)
    run_training(spec, Placement(), session, runner=runner)
    assert not set(FINAL_EVAL_METRICS) & set(session.reports[-1][0])


def test_ten_crop_final_eval_on_tiny_synthetic_images_through_dali(tmp_path: Path) -> None:
    from resnetctl.data import build_ten_crop_loader, prepare_dataset

    source = {**IMAGENET_DATA["source"], "cache_dir": str(tmp_path / "cache")}
    data = {**IMAGENET_DATA, "source": source}
    spec = job_spec(
        train={"epochs": 1, "batch_size_per_worker": 4, **FINAL_EVAL},
        data=data,
        model={"name": "cifar_resnet8"},
    )
    session = FakeSession(tmp_path / "runs")
    run_training(spec, Placement(), session)
    last = session.reports[-1][0]
    assert last["final_eval_epoch"] == 1
    # The same number from the checkpoint's weights and every val image's 10 crops.
    weights = load_checkpoint(session.checkpoints[-1])[0]["model"]
    from resnetctl.models import create_model

    model: nn.Module = create_model("cifar_resnet8", **spec.model.create_options(NUM_CLASSES))
    model.load_state_dict(weights)
    model.eval()
    layout = prepare_dataset(spec.data)
    wrong = total = 0
    with torch.no_grad():
        for images, labels in build_ten_crop_loader(spec.data, layout, batch_size=5):
            assert images.shape[1:] == (10, 3, 8, 8)
            n = images.shape[0]
            probs = model(images.flatten(0, 1)).softmax(-1).view(n, 10, -1).mean(1)
            wrong += int((probs.argmax(-1) != labels.view(-1)).sum())
            total += n
    assert total == NUM_CLASSES * 3
    assert last["val_top1_error_10crop"] == pytest.approx(100.0 * wrong / total)
