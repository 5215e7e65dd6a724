"""Parameter and multiply-add counting, checked against hand-computed figures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnetctl.models import complexity as complexity_module
from resnetctl.models import count_macs, count_parameters, create_model, describe


def test_count_parameters() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2, bias=False))
    assert count_parameters(model) == 3 * 4 + 4 + 4 * 2
    model[0].weight.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == 4 + 4 * 2


def test_count_macs_of_a_conv_and_a_linear() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 10 * 12, 5))
    expected = 8 * 10 * 12 * (3 * 3 * 3) + 8 * 10 * 12 * 5
    assert count_macs(model, (10, 12)) == expected


def _cifar_resnet_macs(depth: int) -> int:
    """Section 4.2's net by hand: stem, 3 stages of 2n 3x3 convs at 32, 16, 8 pixels, fc."""
    n = (depth - 2) // 6
    macs = 32 * 32 * 16 * 3 * 9
    macs += 2 * n * 32 * 32 * 16 * 16 * 9
    for size, width in ((16, 32), (8, 64)):
        macs += size * size * width * (width // 2) * 9  # the stride-2 conv
        macs += (2 * n - 1) * size * size * width * width * 9
    return macs + 64 * 10


@pytest.mark.parametrize("depth", [20, 56])
def test_count_macs_of_cifar_nets_matches_hand_count(depth: int) -> None:
    assert count_macs(create_model(f"cifar_resnet{depth}"), 32) == _cifar_resnet_macs(depth)


def test_count_macs_restores_mode_and_leaves_no_state() -> None:
    model = create_model("cifar_resnet20")
    model.train()
    before = model.bn1.running_mean.clone()
    count_macs(model, 32)
    assert model.training
    assert torch.equal(model.bn1.running_mean, before)  # eval mode: BN statistics untouched
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    count_macs(model, 32)
    assert not model.training


def test_batch_norm_runs_again_after_counting() -> None:
    # Counting runs BN as an identity; afterwards the layers must normalise and track again.
    model = create_model("cifar_resnet20")
    count_macs(model, 32)
    assert "forward" not in vars(model.bn1)
    model.train()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert not torch.equal(model.bn1.running_mean, torch.zeros_like(model.bn1.running_mean))


def test_count_macs_in_channels() -> None:
    model = create_model("cifar_resnet20", in_channels=1)
    assert count_macs(model, 32, in_channels=1) == _cifar_resnet_macs(20) - 32 * 32 * 16 * 2 * 9


def test_describe() -> None:
    info = describe("cifar_resnet20")
    assert set(info) >= {
        "name",
        "family",
        "depth",
        "block",
        "shortcut",
        "plain",
        "params",
        "macs",
        "input_size",
    }
    assert (info["name"], info["family"], info["depth"], info["shortcut"]) == (
        "cifar_resnet20",
        "cifar",
        20,
        "A",
    )
    assert info["params"] == count_parameters(create_model("cifar_resnet20"))
    assert info["macs"] == _cifar_resnet_macs(20)
    assert describe("resnet18")["input_size"] == 224


def test_describe_is_cached_and_returns_fresh_dicts() -> None:
    first = describe("cifar_resnet32")
    hits = complexity_module._describe.cache_info().hits
    first["params"] = -1
    second = describe("cifar_resnet32")
    assert complexity_module._describe.cache_info().hits == hits + 1
    assert second["params"] > 0
