"""The layer-response statistics of Fig. 7: which layers, in which order, and exact stds."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from resnetctl.analysis import AnalysisError, layer_responses, response_layers, sorted_stds
from resnetctl.models import cifar_preact_resnet, create_model


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BN with non-trivial affine parameters and running statistics, as after training."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = 0.2 + torch.rand(n, generator=generator)
            module.bias.data = torch.randn(n, generator=generator) * 0.3
            module.running_mean = torch.randn(n, generator=generator) * 0.5
            module.running_var = 0.5 + torch.rand(n, generator=generator)
    return model.eval()


def _expected_cifar_names(n: int) -> list[str]:
    names = ["conv1"]
    for stage in (1, 2, 3):
        for block in range(n):
            names += [f"layer{stage}.{block}.conv1", f"layer{stage}.{block}.conv2"]
    return names


@pytest.mark.parametrize(
    ("name", "depth_n"),
    [("cifar_resnet20", 3), ("cifar_plain20", 3), ("cifar_resnet56", 9), ("cifar_plain8", 1)],
)
def test_cifar_nets_measure_the_stem_and_every_block_conv_in_order(name: str, depth_n: int) -> None:
    layers = response_layers(create_model(name), torch.randn(1, 3, 32, 32))
    # depth 6n+2 = the 3x3 stem + 6n block convs + the fc: every layer but the fc is a 3x3 conv
    assert len(layers) == 6 * depth_n + 1
    assert [layer.conv for layer in layers] == _expected_cifar_names(depth_n)
    assert [layer.norm for layer in layers] == [
        c.replace("conv", "bn") for c in _expected_cifar_names(depth_n)
    ]
    assert [layer.index for layer in layers] == list(range(1, len(layers) + 1))
    assert [layer.channels for layer in layers][:2] == [16, 16] and layers[-1].channels == 64


def test_bottleneck_nets_measure_only_the_middle_3x3() -> None:
    model = create_model("resnet50", num_classes=10)
    layers = response_layers(model, torch.randn(1, 3, 64, 64))
    blocks = [f"layer{s}.{b}" for s, count in enumerate((3, 4, 6, 3), 1) for b in range(count)]
    assert len(layers) == 16  # one 3x3 per bottleneck; the 7x7 stem and the 1x1s are not 3x3
    assert [layer.conv for layer in layers] == [f"{b}.conv2" for b in blocks]
    assert [layer.norm for layer in layers] == [f"{b}.bn2" for b in blocks]
    assert [layer.channels for layer in layers][::5] == [64, 128, 256, 512][: len(layers[::5])]


def test_imagenet_basic_nets_skip_the_7x7_stem_and_projection_shortcuts() -> None:
    resnet = response_layers(create_model("resnet18", num_classes=10), torch.randn(1, 3, 64, 64))
    plain = response_layers(create_model("plain34", num_classes=10), torch.randn(1, 3, 64, 64))
    assert len(resnet) == 16 and len(plain) == 32
    assert "downsample" not in " ".join(layer.norm for layer in resnet)
    assert resnet[0].conv == "layer1.0.conv1"


def test_option_c_projections_do_not_change_the_layers() -> None:
    a = response_layers(create_model("cifar_resnet20"), torch.randn(1, 3, 32, 32))
    c = response_layers(create_model("cifar_resnet20", shortcut="C"), torch.randn(1, 3, 32, 32))
    assert [x.norm for x in a] == [x.norm for x in c]


def test_preactivation_nets_are_refused() -> None:
    with pytest.raises(AnalysisError, match="pre-activation"):
        response_layers(cifar_preact_resnet(8, bottleneck=False), torch.randn(1, 3, 32, 32))


@pytest.mark.parametrize("name", ["cifar_resnet8", "cifar_plain8"])
def test_values_are_the_std_of_the_bn_outputs(name: str) -> None:
    torch.manual_seed(0)
    model = _randomise_bn(create_model(name))
    x = torch.randn(6, 3, 32, 32)
    # Two uneven batches: the running moments must equal one pass over the concatenation.
    responses = layer_responses(model, [(x[:4], torch.zeros(4)), (x[4:], torch.zeros(2))])

    with torch.no_grad():
        stem = model.bn1(model.conv1(x))
        expected = [stem.std().item()]
        h = model.relu(stem)
        for stage in (model.layer1, model.layer2, model.layer3):
            block = stage[0]
            first = block.bn1(block.conv1(h))
            second = block.bn2(block.conv2(torch.relu(first)))  # before the addition
            expected += [first.std().item(), second.std().item()]
            h = block(h)
    assert [r.std for r in responses] == pytest.approx(expected, rel=1e-6)
    assert all(r.images == 6 for r in responses)
    assert responses[0].count == 6 * 16 * 32 * 32
    assert responses[-1].count == 6 * 64 * 8 * 8
    assert sorted_stds(responses) == pytest.approx(sorted(expected, reverse=True), rel=1e-6)
    assert not model.training  # left as it was


def test_residual_and_plain_twins_differ_only_where_the_sum_enters() -> None:
    torch.manual_seed(1)
    plain = _randomise_bn(create_model("cifar_plain8"))
    resnet = _randomise_bn(create_model("cifar_resnet8"))
    resnet.load_state_dict(plain.state_dict())  # option A adds no parameters
    x = torch.randn(4, 3, 32, 32)
    p, r = layer_responses(plain, [x]), layer_responses(resnet, [x])
    # The stem and the first block's convs see the same input in both; after the first
    # addition the ResNet's layers see a different input.
    assert [a.std for a in p[:3]] == pytest.approx([b.std for b in r[:3]], rel=1e-6)
    assert p[3].std != pytest.approx(r[3].std, rel=1e-3)


def test_max_images_and_training_mode_are_honoured() -> None:
    model = create_model("cifar_resnet8")
    model.train()
    x = torch.randn(10, 3, 32, 32)
    cut = layer_responses(model, [x[:4], x[4:]], max_images=5)
    direct = layer_responses(model, [x[:5]])
    assert [r.std for r in cut] == pytest.approx([r.std for r in direct], rel=1e-6)
    assert cut[0].images == 5
    assert model.training  # BN ran in inference mode, and the mode was restored
    assert all(math.isfinite(r.std) for r in cut)


def test_no_images_is_an_error() -> None:
    with pytest.raises(AnalysisError, match="no images"):
        layer_responses(create_model("cifar_resnet8"), [])
