"""CIFAR-10 nets of section 4.2: Table 6's parameter counts and the 6n+2 architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from resnetctl.models import (
    BasicBlock,
    ZeroPadShortcut,
    cifar_preact_resnet,
    cifar_resnet,
    count_parameters,
    create_model,
    get_model_info,
)

# Table 6 of the paper, as printed.
TABLE6_PARAMS_M = {20: "0.27", 32: "0.46", 44: "0.66", 56: "0.85", 110: "1.7", 1202: "19.4"}


def _as_printed(count: int, printed: str) -> str:
    decimals = len(printed.partition(".")[2])
    return f"{count / 1e6:.{decimals}f}"


@pytest.mark.parametrize("depth", sorted(TABLE6_PARAMS_M))
def test_option_a_params_match_table6(depth: int) -> None:
    printed = TABLE6_PARAMS_M[depth]
    assert _as_printed(count_parameters(create_model(f"cifar_resnet{depth}")), printed) == printed


@pytest.mark.parametrize("depth", [20, 56, 110])
def test_option_a_net_has_exactly_its_plain_twins_params(depth: int) -> None:
    residual = create_model(f"cifar_resnet{depth}")
    plain = create_model(f"cifar_plain{depth}")
    assert count_parameters(residual) == count_parameters(plain)
    assert sum(isinstance(m, ZeroPadShortcut) for m in residual.modules()) == 2
    assert not any(isinstance(m, ZeroPadShortcut) for m in plain.modules())
    assert all(not b.residual for b in plain.modules() if isinstance(b, BasicBlock))


@pytest.mark.parametrize("depth", [20, 26, 56])
def test_architecture_is_section_4_2(depth: int) -> None:
    n = (depth - 2) // 6
    model = cifar_resnet(depth)
    assert (model.conv1.kernel_size, model.conv1.stride, model.conv1.out_channels) == (
        (3, 3),
        (1, 1),
        16,
    )
    assert isinstance(model.maxpool, nn.Identity)
    assert not hasattr(model, "layer4")
    for stage, width in zip((model.layer1, model.layer2, model.layer3), (16, 32, 64), strict=True):
        assert len(stage) == n
        assert all(b.conv2.out_channels == width for b in stage)
    # Subsampling by stride-2 convolution at the first block of stages 2 and 3, nowhere else.
    strided = [
        name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.stride == (2, 2)
    ]
    assert strided == ["layer2.0.conv1", "layer3.0.conv1"]
    assert model.fc.in_features == 64 and model.fc.out_features == 10
    x = torch.randn(2, 3, 32, 32)
    features = model.layer3(model.layer2(model.layer1(model.relu(model.bn1(model.conv1(x))))))
    assert features.shape == (2, 64, 8, 8)


@pytest.mark.parametrize(("shortcut", "projections"), [("A", 0), ("B", 2), ("C", 9)])
def test_shortcut_options(shortcut: str, projections: int) -> None:
    model = create_model("cifar_resnet20", shortcut=shortcut)
    convs = [
        m for name, m in model.named_modules() if ".downsample" in name and isinstance(m, nn.Conv2d)
    ]
    assert len(convs) == projections
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_plain_block_does_not_add_its_input() -> None:
    residual = create_model("cifar_resnet20").eval()
    plain = create_model("cifar_plain20").eval()
    x = torch.rand(1, 16, 32, 32) + 0.1  # positive, like every block input
    with torch.no_grad():
        for model in (residual, plain):
            model.layer1[1].bn2.weight.zero_()
            model.layer1[1].bn2.bias.zero_()
        torch.testing.assert_close(residual.layer1[1](x), x)
        assert plain.layer1[1](x).abs().max() == 0


def test_builder_accepts_any_6n_plus_2_depth_only() -> None:
    assert len(cifar_resnet(26).layer1) == 4
    assert len(cifar_resnet(8, plain=True).layer3) == 1
    for depth in (21, 2, 0, 19.5):
        with pytest.raises(ValueError, match=r"6n\+2"):
            cifar_resnet(depth)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="shortcut"):
        cifar_resnet(20, plain=True, shortcut="A")


def test_options() -> None:
    model = create_model("cifar_resnet20", num_classes=100, in_channels=1)
    assert model.fc.out_features == 100
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    zero = create_model("cifar_resnet20", zero_init_residual=True)
    blocks = [m for m in zero.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 9
    assert all(torch.count_nonzero(b.bn2.weight) == 0 for b in blocks)
    assert all(torch.all(b.bn1.weight == 1) for b in blocks)


# "Identity Mappings in Deep Residual Networks" (He et al., ECCV 2016), Tables 3 and 4 and Fig. 1.
@pytest.mark.parametrize(("depth", "printed"), [(110, "1.7"), (164, "1.7")])
def test_preact_params_match_identity_mappings(depth: int, printed: str) -> None:
    model = create_model(f"cifar_preact_resnet{depth}")
    assert _as_printed(count_parameters(model), printed) == printed
    assert get_model_info(f"cifar_preact_resnet{depth}").preact


def test_preact_1001_weights_match_identity_mappings() -> None:
    # The paper's 10.2M counts convolution and fc weights; BN adds another 0.15M.
    model = create_model("cifar_preact_resnet1001")
    weights = sum(
        m.weight.numel() + (0 if m.bias is None else m.bias.numel())
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    )
    assert _as_printed(weights, "10.2") == "10.2"


def test_preact_builder_rules() -> None:
    assert get_model_info("cifar_preact_resnet164").block == "bottleneck"
    assert get_model_info("cifar_preact_resnet110").block == "basic"
    assert len(cifar_preact_resnet(56, bottleneck=False).layer2) == 9
    with pytest.raises(ValueError, match=r"9n\+2"):
        cifar_preact_resnet(104, bottleneck=True)
    with pytest.raises(ValueError, match="110"):
        create_model("cifar_preact_resnet56")
