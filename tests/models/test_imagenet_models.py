"""ImageNet ResNets: torchvision compatibility, Table 1, and the paper's shortcut options."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from resnetctl.models import (
    BasicBlock,
    Bottleneck,
    ZeroPadShortcut,
    count_macs,
    count_parameters,
    create_model,
)

DEPTHS = [18, 34, 50, 101, 152]
# Table 1 of the paper (multiply-adds) and the parameter column of /work/shared/paper.md.
TABLE1_MACS = {18: 1.8e9, 34: 3.6e9, 50: 3.8e9, 101: 7.6e9, 152: 11.3e9}
PAPER_PARAMS_M = {18: "11.69", 34: "21.80", 50: "25.56", 101: "44.55", 152: "60.19"}
TV_WEIGHTS = {
    18: tvm.ResNet18_Weights,
    34: tvm.ResNet34_Weights,
    50: tvm.ResNet50_Weights,
    101: tvm.ResNet101_Weights,
    152: tvm.ResNet152_Weights,
}


def _blocks(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]


def _shortcut_projections(model: nn.Module) -> int:
    return sum(
        isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
        for name, m in model.named_modules()
        if ".downsample" in name
    )


@pytest.fixture(scope="module", params=DEPTHS, ids=[f"resnet{d}" for d in DEPTHS])
def twins(request: pytest.FixtureRequest) -> tuple[int, nn.Module, nn.Module]:
    """(depth, ours as torchvision's v1.5, torchvision's) with identical weights, in eval mode."""
    depth = request.param
    torch.manual_seed(depth)
    theirs = getattr(tvm, f"resnet{depth}")().eval()
    ours = create_model(f"resnet{depth}", stride_in_1x1=False).eval()
    # Random BN statistics, so the comparison also exercises running_mean and running_var.
    with torch.no_grad():
        for m in theirs.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return depth, ours, theirs


def test_params_equal_torchvision(twins: tuple[int, nn.Module, nn.Module]) -> None:
    depth, ours, theirs = twins
    assert count_parameters(ours) == count_parameters(theirs)
    assert f"{count_parameters(ours) / 1e6:.2f}" == PAPER_PARAMS_M[depth]


def test_state_dicts_load_both_ways(twins: tuple[int, nn.Module, nn.Module]) -> None:
    depth, ours, theirs = twins
    assert list(ours.state_dict()) == list(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict(), strict=True)
    # The paper's placement only moves a stride, so torchvision's weights load into it too.
    create_model(f"resnet{depth}").load_state_dict(theirs.state_dict(), strict=True)


def test_logits_equal_torchvision(twins: tuple[int, nn.Module, nn.Module]) -> None:
    _, ours, theirs = twins
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = theirs(x)
        actual = ours(x)
    assert expected.abs().max() > 1e-3  # a non-trivial output, so equality means something
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("depth", DEPTHS)
def test_macs_match_table1(depth: int) -> None:
    model = create_model(f"resnet{depth}", stride_in_1x1=True, shortcut="B")
    macs = count_macs(model, 224)
    assert macs == pytest.approx(TABLE1_MACS[depth], rel=0.03)


@pytest.mark.parametrize("depth", [18, 50, 152])
def test_v15_macs_match_torchvision_published(depth: int) -> None:
    # torchvision publishes its v1.5 models' GFLOPS (which are multiply-adds) in weight metadata.
    published = TV_WEIGHTS[depth].IMAGENET1K_V1.meta["_ops"]
    macs = count_macs(create_model(f"resnet{depth}", stride_in_1x1=False), 224)
    assert round(macs / 1e9, 3) == pytest.approx(published, abs=1e-3)


@pytest.mark.parametrize("depth", [50, 101])
@pytest.mark.parametrize("stride_in_1x1", [True, False])
def test_stride_placement(depth: int, stride_in_1x1: bool) -> None:
    model = create_model(f"resnet{depth}", stride_in_1x1=stride_in_1x1)
    for stage in (model.layer2, model.layer3, model.layer4):
        first = stage[0]
        expected = ((2, 2), (1, 1)) if stride_in_1x1 else ((1, 1), (2, 2))
        assert (first.conv1.stride, first.conv2.stride) == expected
        assert first.downsample[0].stride == (2, 2)
        assert all(b.conv1.stride == b.conv2.stride == (1, 1) for b in list(stage)[1:])
    assert all(b.conv1.stride == b.conv2.stride == (1, 1) for b in model.layer1)


@pytest.mark.parametrize(
    ("depth", "layers", "growing_stages"),
    # Basic nets grow in layer2..4; bottlenecks also in layer1 (64 -> 256 at stride 1).
    [(18, [2, 2, 2, 2], 3), (34, [3, 4, 6, 3], 3), (50, [3, 4, 6, 3], 4)],
)
def test_shortcut_options_change_structure(
    depth: int, layers: list[int], growing_stages: int
) -> None:
    a = create_model(f"resnet{depth}", shortcut="A")
    b = create_model(f"resnet{depth}", shortcut="B")
    c = create_model(f"resnet{depth}", shortcut="C")
    plain = create_model(f"plain{depth}")
    assert _shortcut_projections(a) == 0
    assert sum(isinstance(m, ZeroPadShortcut) for m in a.modules()) == growing_stages
    assert _shortcut_projections(b) == growing_stages
    assert _shortcut_projections(c) == sum(layers) == len(_blocks(c))
    assert all(b.downsample is None and not b.residual for b in _blocks(plain))
    assert _shortcut_projections(plain) == 0
    assert not any(isinstance(m, ZeroPadShortcut) for m in plain.modules())
    # Option A adds no parameters: it has exactly its plain twin's.
    assert count_parameters(a) == count_parameters(plain)
    assert count_parameters(a) < count_parameters(b) < count_parameters(c)
    x = torch.randn(2, 3, 64, 64)
    for model in (a, b, c, plain):
        assert model(x).shape == (2, 1000)


@pytest.mark.parametrize("depth", [18, 50])
def test_plain_blocks_do_not_add_their_input(depth: int) -> None:
    residual = create_model(f"resnet{depth}").eval()
    plain = create_model(f"plain{depth}").eval()
    for model in (residual, plain):
        block = model.layer2[1]  # identity shortcut in the residual net
        last_norm = block.bn3 if depth >= 50 else block.bn2
        with torch.no_grad():
            last_norm.weight.zero_()
            last_norm.bias.zero_()
    # Positive, like every block input (it follows a ReLU).
    x = torch.rand(1, residual.layer2[1].conv1.in_channels, 8, 8) + 0.1
    with torch.no_grad():
        # With the residual branch silenced, a residual block passes its input through ...
        torch.testing.assert_close(residual.layer2[1](x), x)
        # ... and a plain block, which adds nothing, outputs zeros.
        assert plain.layer2[1](x).abs().max() == 0


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_zeroes_each_blocks_last_norm(name: str) -> None:
    model = create_model(name, zero_init_residual=True)
    blocks = _blocks(model)
    last = [b.bn3 if isinstance(b, Bottleneck) else b.bn2 for b in blocks]
    assert len(last) == len(blocks) > 0
    assert all(torch.count_nonzero(bn.weight) == 0 for bn in last)
    assert all(torch.all(b.bn1.weight == 1) for b in blocks)
    default = create_model(name)
    assert all(torch.all(b.bn2.weight == 1) for b in _blocks(default))


def test_he_initialisation() -> None:
    torch.manual_seed(0)
    model = create_model("resnet50")
    conv = model.layer3[0].conv2  # 3x3, 256 -> 256: fan_out = 256 * 9
    expected_std = (2.0 / (conv.out_channels * 9)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected_std, rel=0.02)
    assert all(
        torch.all(m.weight == 1) and torch.all(m.bias == 0)
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )


def test_injection_options() -> None:
    model = create_model(
        "resnet18", num_classes=7, in_channels=1, norm_layer=lambda c: nn.GroupNorm(32, c)
    )
    assert model.conv1.in_channels == 1
    assert model.fc.out_features == 7
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert sum(isinstance(m, nn.GroupNorm) for m in model.modules()) > 0
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 7)
