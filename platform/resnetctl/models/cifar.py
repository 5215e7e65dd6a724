"""The CIFAR-10 nets of section 4.2 (depth 6n+2, Table 6) and, from He et al.'s "Identity
Mappings in Deep Residual Networks" (ECCV 2016), the pre-activation ResNet-110/164/1001.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import Tensor, nn

from resnetctl.models.blocks import (
    BasicBlock,
    NormLayer,
    PreActBasicBlock,
    PreActBottleneck,
    check_choice,
    check_positive_int,
    conv1x1,
    conv3x3,
)
from resnetctl.models.catalog import (
    CIFAR_DEPTH_RULE,
    CIFAR_DEPTHS,
    PREACT_DEPTHS,
    PREFIXES,
    is_cifar_depth,
)
from resnetctl.models.imagenet import ResNet
from resnetctl.models.registry import attach_builder, attach_series


def cifar_resnet(
    depth: int,
    *,
    plain: bool = False,
    shortcut: str | None = None,
    num_classes: int = 10,
    in_channels: int = 3,
    zero_init_residual: bool = False,
    norm_layer: NormLayer | None = None,
) -> ResNet:
    """The paper's CIFAR-10 ResNet (or, with ``plain=True``, plain net) of any depth 6n+2.

    3x3 conv to 16 channels, then three stages of n basic blocks at 16, 32, 64 filters on 32, 16
    and 8 pixel maps (stride-2 conv at the first block of stages 2 and 3), average pool, fc.
    ``shortcut`` defaults to "A", as in the paper; plain nets take no ``shortcut``.

    >>> cifar_resnet(20).fc.in_features
    64
    """
    if not is_cifar_depth(depth):
        raise ValueError(f"depth {depth!r} is not allowed: {CIFAR_DEPTH_RULE}")
    check_choice("plain", plain, (True, False))
    if plain and shortcut is not None:
        raise ValueError(f"plain nets have no shortcuts; got shortcut={shortcut!r}")
    n = (depth - 2) // 6
    return ResNet(
        BasicBlock,
        [n, n, n],
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut=None if plain else ("A" if shortcut is None else shortcut),
        zero_init_residual=zero_init_residual,
        norm_layer=norm_layer,
        widths=(16, 32, 64),
        stem_kernel_size=3,
        stem_stride=1,
        stem_pool=False,
    )


PreActBlock = type[PreActBasicBlock] | type[PreActBottleneck]


class PreActResNet(nn.Module):
    """Pre-activation ResNet for CIFAR ("Identity Mappings", section 4 and Table 4).

    Projections (1x1 conv, no norm: the next block's BN-ReLU follows) where the shape changes,
    identity elsewhere; a final BN-ReLU before pooling because no block ends with one.
    """

    def __init__(
        self,
        block: PreActBlock,
        layers: Sequence[int],
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        norm_layer: NormLayer | None = None,
        widths: Sequence[int] = (16, 32, 64),
    ) -> None:
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        self._norm_layer: NormLayer = norm_layer or nn.BatchNorm2d
        self.inplanes = widths[0]
        self.conv1 = conv3x3(in_channels, self.inplanes)
        self._stage_names: list[str] = []
        for index, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            name = f"layer{index + 1}"
            stage = self._make_layer(block, planes, blocks, stride=1 if index == 0 else 2)
            self.add_module(name, stage)
            self._stage_names.append(name)
        self.bn = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(
        self, block: PreActBlock, planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        layers: list[nn.Module] = []
        for index in range(blocks):
            block_stride = stride if index == 0 else 1
            out_planes = planes * block.expansion
            projects = block_stride != 1 or self.inplanes != out_planes
            downsample = conv1x1(self.inplanes, out_planes, block_stride) if projects else None
            # The stem has no BN-ReLU, so the first block shares its own with its shortcut.
            first_of_net = not self._stage_names and index == 0
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    block_stride,
                    downsample,
                    self._norm_layer,
                    preact_shortcut=projects or first_of_net,
                )
            )
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        for name in self._stage_names:
            x = getattr(self, name)(x)
        x = self.relu(self.bn(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def cifar_preact_resnet(
    depth: int,
    *,
    bottleneck: bool = True,
    num_classes: int = 10,
    in_channels: int = 3,
    norm_layer: NormLayer | None = None,
) -> PreActResNet:
    """Pre-activation ResNet: depth 9n+2 with bottlenecks (164, 1001) or 6n+2 without (110)."""
    check_choice("bottleneck", bottleneck, (True, False))
    layers_per_block = 3 if bottleneck else 2
    valid = isinstance(depth, int) and not isinstance(depth, bool)
    n, rest = divmod(depth - 2, 3 * layers_per_block) if valid else (0, 0)
    if n < 1 or rest:
        rule = "9n+2" if bottleneck else "6n+2"
        raise ValueError(f"depth {depth!r} is not allowed: bottleneck={bottleneck} needs {rule}")
    block: PreActBlock = PreActBottleneck if bottleneck else PreActBasicBlock
    return PreActResNet(
        block, [n, n, n], num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer
    )


_CIFAR_OPTIONS = ("num_classes", "in_channels", "zero_init_residual", "norm_layer")


def _cifar_builder(depth: int, *, plain: bool) -> tuple[partial[ResNet], tuple[str, ...]]:
    options = _CIFAR_OPTIONS if plain else (*_CIFAR_OPTIONS, "shortcut")
    return partial(cifar_resnet, depth, plain=plain), options


for _plain in (False, True):
    attach_series(PREFIXES["cifar", _plain], partial(_cifar_builder, plain=_plain))
    for _depth in CIFAR_DEPTHS:
        attach_builder(
            PREFIXES["cifar", _plain] + str(_depth), *_cifar_builder(_depth, plain=_plain)
        )
for _depth, _bottleneck in PREACT_DEPTHS.items():
    attach_builder(
        f"cifar_preact_resnet{_depth}",
        partial(cifar_preact_resnet, _depth, bottleneck=_bottleneck),
        options=("num_classes", "in_channels", "norm_layer"),
    )
