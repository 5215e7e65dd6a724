"""`train.mix`: what mixup and CutMix do to a batch and its targets, and what prob 0 leaves."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from resnetctl.spec.train import MixSpec
from resnetctl.train.mixup import BatchMixer
from resnetctl.train.runner import Runner
from tests.train._helpers import batches, job_spec, tiny_model

CLASSES = 4


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    # Distinct labels, so each target row tells the ratio: lam at its own class.
    return torch.rand(4, 3, 16, 16, generator=gen), torch.tensor([0, 1, 2, 3])


def check_targets(targets: torch.Tensor, labels: torch.Tensor) -> float:
    """Targets are lam * onehot(y) + (1 - lam) * onehot(y rolled by one); returns lam."""
    lam = float(targets[0, labels[0]])
    expected = lam * F.one_hot(labels, CLASSES) + (1 - lam) * F.one_hot(labels.roll(1), CLASSES)
    torch.testing.assert_close(targets, expected.float())
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(4))
    return lam


def test_mixup_blends_each_image_with_its_partner() -> None:
    torch.manual_seed(0)
    images, labels = batch()
    mixed, targets = BatchMixer(MixSpec(mixup_alpha=1.0, cutmix_alpha=0.0), CLASSES)(images, labels)
    lam = check_targets(targets, labels)
    assert 0.0 < lam < 1.0
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.roll(1, 0))


def test_cutmix_pastes_a_box_of_the_partner_with_its_area_as_ratio() -> None:
    torch.manual_seed(0)
    images, labels = batch()
    mixed, targets = BatchMixer(MixSpec(mixup_alpha=0.0, cutmix_alpha=1.0), CLASSES)(images, labels)
    lam = check_targets(targets, labels)
    partner = images.roll(1, 0)
    from_partner = (mixed == partner).all(dim=1)  # N x H x W: pixels taken from the partner
    kept = (mixed == images).all(dim=1)
    assert bool((from_partner | kept).all())
    box = from_partner[0]
    rows, cols = box.any(dim=1).nonzero().flatten(), box.any(dim=0).nonzero().flatten()
    assert rows.numel() and cols.numel()
    # One rectangle, the same one in every image, whose area is the partner's share.
    assert int(box.sum()) == rows.numel() * cols.numel()
    assert bool((from_partner == box).all())
    assert box.float().mean().item() == pytest.approx(1 - lam)


def test_prob_zero_leaves_the_batch_unchanged() -> None:
    images, labels = batch()
    mixed, targets = BatchMixer(MixSpec(prob=0.0), CLASSES)(images, labels)
    assert mixed is images and targets is labels


def test_switch_prob_chooses_cutmix_or_mixup() -> None:
    torch.manual_seed(0)
    images, labels = batch()
    for switch, blended in ((0.0, True), (1.0, False)):
        mixed, _ = BatchMixer(MixSpec(mixup_alpha=1.0, switch_prob=switch), CLASSES)(images, labels)
        # Mixup changes every pixel; CutMix leaves pixels outside the box untouched.
        assert bool((mixed == images).any()) is not blended


def test_runner_trains_on_smoothed_soft_targets() -> None:
    spec = job_spec({"epochs": 1, "label_smoothing": 0.1, "mix": {"prob": 1.0}})
    model = tiny_model()
    r = Runner(spec, model=model, train_loader=batches(1), val_loader=batches(1))
    torch.manual_seed(0)
    x, y = batches(1)[0]
    mixed, targets = r.mixer(x, y)
    assert targets.shape == (8, CLASSES)  # the width of the model's logits
    logits = torch.randn(8, CLASSES)
    # The label smoothing of the recipe applies on top of the mixture.
    smoothed = targets * 0.9 + 0.1 / CLASSES
    manual = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(r.criterion(logits, targets), manual)

    # The step's loss is that of the mixed batch against the smoothed mixture (the same draws
    # from the same seed), while the train error counts the unmixed labels.
    before = copy.deepcopy(model).train()
    torch.manual_seed(1)
    metrics = r.train_epoch(1)
    torch.manual_seed(1)
    mixed, targets = r.mixer(x, y)
    assert not torch.equal(mixed, x)
    with torch.no_grad():
        logits = before(mixed)
    smoothed = targets * 0.9 + 0.1 / CLASSES
    expected = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    assert metrics["train_loss"] == pytest.approx(float(expected), rel=1e-5)
    error = 100.0 * float((logits.argmax(dim=1) != y).float().mean())
    assert metrics["train_top1_error"] == pytest.approx(error)
