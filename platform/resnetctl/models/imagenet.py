"""The ImageNet ResNets and plain nets of the paper's Table 1, and the trunk the CIFAR nets share.

Under shortcut option B and ``stride_in_1x1=False`` these are torchvision's ResNets, parameter for
parameter and name for name; the default ``stride_in_1x1=True`` is the paper's own placement.
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
    check_choice,
    check_positive_int,
    make_shortcut,
)
from resnetctl.models.catalog import IMAGENET_STAGES
from resnetctl.models.registry import attach_builder

Block = type[BasicBlock] | type[Bottleneck]

_BLOCKS: dict[str, Block] = {"basic": BasicBlock, "bottleneck": Bottleneck}
#: The catalog's Table 1 with the block classes: depth -> (block, blocks per stage).
IMAGENET_DEPTHS: dict[int, tuple[Block, tuple[int, ...]]] = {
    depth: (_BLOCKS[kind], layers) for depth, (kind, layers) in IMAGENET_STAGES.items()
}


class ResNet(nn.Module):
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
        super().__init__()
        if shortcut is not None:
            check_choice("shortcut", shortcut, SHORTCUTS)
        check_choice("stride_in_1x1", stride_in_1x1, (True, False))
        check_choice("zero_init_residual", zero_init_residual, (True, False))
        check_positive_int("num_classes", num_classes)
        check_positive_int("in_channels", in_channels)
        if len(layers) != len(widths):
            raise ValueError(f"need one width per stage: layers={layers}, widths={widths}")
        if shortcut is None and zero_init_residual:
            # A plain block has no identity to fall back on: zeroing its last BN kills the signal.
            raise ValueError("zero_init_residual needs shortcuts; plain nets cannot use it")
        self._norm_layer: NormLayer = norm_layer or nn.BatchNorm2d
        self._shortcut = shortcut
        self._stride_in_1x1 = stride_in_1x1

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
        self._stage_names: list[str] = []
        for index, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
            name = f"layer{index + 1}"
            stage = self._make_layer(block, planes, blocks, stride=1 if index == 0 else 2)
            self.add_module(name, stage)
            self._stage_names.append(name)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(self.inplanes, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # He et al. 2015: keeps the activation variance constant through ReLU layers.
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

        if zero_init_residual:
            # Each residual block then starts as an identity; Goyal et al. 2017 ("Accurate, Large
            # Minibatch SGD", arXiv 1706.02677) found it eases large-batch training.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    m.zero_init_last_norm()

    def _make_layer(self, block: Block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers: list[nn.Module] = []
        for index in range(blocks):
            block_stride = stride if index == 0 else 1
            out_planes = planes * block.expansion
            downsample = make_shortcut(
                self._shortcut, self.inplanes, out_planes, block_stride, self._norm_layer
            )
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    block_stride,
                    downsample,
                    self._norm_layer,
                    residual=self._shortcut is not None,
                    stride_in_1x1=self._stride_in_1x1,
                )
            )
            self.inplanes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self._stage_names:
            x = getattr(self, name)(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(
    block: Block,
    layers: Sequence[int],
    *,
    plain: bool = False,
    shortcut: str | None = None,
    **kwargs: Any,
) -> ResNet:
    if plain and shortcut is not None:
        raise ValueError(f"plain nets have no shortcuts; got shortcut={shortcut!r}")
    if not plain and shortcut is None:
        shortcut = "B"
    return ResNet(block, layers, shortcut=shortcut, **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (Table 1); keyword options as for :class:`ResNet`, shortcut default "B"."""
    return _resnet(*IMAGENET_DEPTHS[18], **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (Table 1)."""
    return _resnet(*IMAGENET_DEPTHS[34], **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (Table 1)."""
    return _resnet(*IMAGENET_DEPTHS[50], **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (Table 1)."""
    return _resnet(*IMAGENET_DEPTHS[101], **kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152 (Table 1)."""
    return _resnet(*IMAGENET_DEPTHS[152], **kwargs)


def plain18(**kwargs: Any) -> ResNet:
    """Plain-18: ResNet-18's stack without shortcuts (Table 2)."""
    return _resnet(*IMAGENET_DEPTHS[18], plain=True, **kwargs)


def plain34(**kwargs: Any) -> ResNet:
    """Plain-34 (Table 2, Fig. 4)."""
    return _resnet(*IMAGENET_DEPTHS[34], plain=True, **kwargs)


def plain50(**kwargs: Any) -> ResNet:
    """Plain-50: not in the paper; ResNet-50's stack without shortcuts."""
    return _resnet(*IMAGENET_DEPTHS[50], plain=True, **kwargs)


def plain101(**kwargs: Any) -> ResNet:
    """Plain-101: not in the paper; ResNet-101's stack without shortcuts."""
    return _resnet(*IMAGENET_DEPTHS[101], plain=True, **kwargs)


def plain152(**kwargs: Any) -> ResNet:
    """Plain-152: not in the paper; ResNet-152's stack without shortcuts."""
    return _resnet(*IMAGENET_DEPTHS[152], plain=True, **kwargs)


_OPTIONS = ("num_classes", "in_channels", "stride_in_1x1", "zero_init_residual", "norm_layer")
for _factory in (resnet18, resnet34, resnet50, resnet101, resnet152):
    attach_builder(_factory.__name__, _factory, options=(*_OPTIONS, "shortcut"))
for _factory in (plain18, plain34, plain50, plain101, plain152):
    attach_builder(_factory.__name__, _factory, options=_OPTIONS)
