"""The network both families build, in torchvision's layout: a stem (``conv1``, ...), one
stage of blocks per entry of ``layers`` (``layer1``, ``layer2``, ...; each after the first halves
the map), global average pooling and a linear classifier (``fc``).

``ResNet`` is the paper's (post-activation) network at any width and stem, which makes both the
ImageNet nets of Table 1 and the CIFAR nets of section 4.2; ``PreActResNet`` the pre-activation
network of "Identity Mappings". ``build_resnet`` is the one builder behind every factory of
`imagenet.py` and `cifar.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from resnetctl.models.blocks import (
    SHORTCUTS,
    BasicBlock,
    Bottleneck,
    NormLayer,
    PreActBasicBlock,
    PreActBottleneck,
    check_choice,
    check_positive_int,
    conv3x3,
)

Block = type[BasicBlock] | type[Bottleneck]
PreActBlock = type[PreActBasicBlock] | type[PreActBottleneck]


class _Trunk(nn.Module):
    """What both networks share: the stages, the classifier and He initialisation. A subclass
    adds its stem before ``_add_stages`` and anything between the stages and ``_add_classifier``,
    in the order its state dict lists them."""

    def __init__(self, *, num_classes: int, in_channels: int, norm_layer: NormLayer | None) -> None:
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        super().__init__()
        self._norm_layer: NormLayer = norm_layer or nn.BatchNorm2d

    def _add_stages(
        self,
        block: Block | PreActBlock,
        layers: Sequence[int],
        widths: Sequence[int],
        **options: Any,
    ) -> None:
        """``layers[i]`` blocks of base width ``widths[i]`` per stage, from ``self.inplanes``
        channels; ``options`` go to ``block.build``."""
        if len(layers) != len(widths):
            raise ValueError(f"need one width per stage: layers={layers}, widths={widths}")
        self._stage_names: list[str] = []
        for index, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            name = f"layer{index + 1}"
            stride = 1 if index == 0 else 2
            self.add_module(name, self._make_layer(block, planes, blocks, stride, **options))
            self._stage_names.append(name)

    def _make_layer(
        self, block: Block | PreActBlock, planes: int, blocks: int, stride: int, **options: Any
    ) -> nn.Sequential:
        layers: list[nn.Module] = []
        for index in range(blocks):
            block_stride = stride if index == 0 else 1
            layers.append(
                block.build(self.inplanes, planes, block_stride, self._norm_layer, **options)
            )
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def _add_classifier(self, num_classes: int) -> None:
        """Pool and ``fc``, then He et al.'s initialisation of every layer."""
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015: keeps the activation variance constant through ReLU layers.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _stages(self, x: Tensor) -> Tensor:
        for name in self._stage_names:
            x = getattr(self, name)(x)
        return x

    def _classify(self, x: Tensor) -> Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ResNet(_Trunk):
    """Stem, one stage per entry of ``layers`` (doubling width, halving the map), pool, fc.

    Args:
        block: ``BasicBlock`` or ``Bottleneck``.
        layers: blocks per stage.
        num_classes: outputs of the final fully connected layer.
        in_channels: channels of the input image.
        shortcut: "A", "B" or "C" (the paper's Table 3); ``None`` builds the plain twin.
        stride_in_1x1: bottlenecks only; see :class:`~resnetctl.models.blocks.Bottleneck`.
        zero_init_residual: start every residual branch at zero.
        norm_layer: replaces ``nn.BatchNorm2d``; called with the channel count.
        widths: base width of each stage (the first is also the stem's width).
        stem_kernel_size, stem_stride, stem_pool: 7, 2, True for ImageNet; 3, 1, False for CIFAR.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        *,
        num_classes: int = 1000,
        in_channels: int = 3,
        shortcut: str | None = "B",
        stride_in_1x1: bool = True,
        zero_init_residual: bool = False,
        norm_layer: NormLayer | None = None,
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_kernel_size: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
    ) -> None:
        if shortcut is not None:
            check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("stride_in_1x1", stride_in_1x1, (True, False))
        check_choice("zero_init_residual", zero_init_residual, (True, False))
        super().__init__(num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer)
        if shortcut is None and zero_init_residual:
            # A plain block has no identity to fall back on: zeroing its last BN kills the signal.
            raise ValueError("zero_init_residual needs shortcuts; plain nets cannot use it")

        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(
            in_channels,
            self.inplanes,
            kernel_size=stem_kernel_size,
            stride=stem_stride,
            padding=stem_kernel_size // 2,
            bias=False,
        )
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool: nn.Module = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if stem_pool else nn.Identity()
        )
        self._add_stages(block, layers, widths, shortcut=shortcut, stride_in_1x1=stride_in_1x1)
        self._add_classifier(num_classes)

        if zero_init_residual:
            # Each residual block then starts as an identity; Goyal et al. 2017 ("Accurate, Large
            # Minibatch SGD", arXiv 1706.02677) found it eases large-batch training.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last_norm()

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self._classify(self._stages(x))


class PreActResNet(_Trunk):
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
        super().__init__(num_classes=num_classes, in_channels=in_channels, norm_layer=norm_layer)
        self.inplanes = widths[0]
        self.conv1 = conv3x3(in_channels, self.inplanes)
        self._add_stages(block, layers, widths)
        if len(self.layer1):
            # The stem has no BN-ReLU, so the first block shares its own with its shortcut.
            self.layer1[0].preact_shortcut = True
        self.bn = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self._add_classifier(num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self._stages(self.conv1(x))
        return self._classify(self.relu(self.bn(x)))


def build_resnet(
    block: Block,
    layers: Sequence[int],
    *,
    plain: bool = False,
    shortcut: str | None = None,
    default_shortcut: str,
    **options: Any,
) -> ResNet:
    """The ResNet of ``layers`` ``block``s per stage with ``shortcut`` (``default_shortcut``, the
    family's, when not given), or with ``plain=True`` its plain twin; ``options`` as for
    :class:`ResNet`."""
    check_choice("plain", plain, (True, False))
    if plain and shortcut is not None:
        raise ValueError(f"plain nets have no shortcuts; got shortcut={shortcut!r}")
    if not plain and shortcut is None:
        shortcut = default_shortcut
    return ResNet(block, layers, shortcut=None if plain else shortcut, **options)
