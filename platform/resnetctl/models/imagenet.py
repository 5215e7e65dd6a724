"""The ImageNet ResNets and plain nets of the paper's Table 1.

Under shortcut option B and ``stride_in_1x1=False`` these are torchvision's ResNets, parameter for
parameter and name for name; the default ``stride_in_1x1=True`` is the paper's own placement.
"""

from __future__ import annotations

from typing import Any

from resnetctl.models.blocks import BasicBlock, Bottleneck
from resnetctl.models.catalog import IMAGENET_STAGES
from resnetctl.models.registry import attach_builder

# Networks pickled before the trunk had a module of its own name their class
# `resnetctl.models.imagenet.ResNet`: keep it importable from here.
from resnetctl.models.trunk import Block, ResNet, build_resnet

_BLOCKS: dict[str, Block] = {"basic": BasicBlock, "bottleneck": Bottleneck}
#: The catalog's Table 1 with the block classes: depth -> (block, blocks per stage).
IMAGENET_DEPTHS: dict[int, tuple[Block, tuple[int, ...]]] = {
    depth: (_BLOCKS[kind], layers) for depth, (kind, layers) in IMAGENET_STAGES.items()
}


def _imagenet_resnet(depth: int, **kwargs: Any) -> ResNet:
    return build_resnet(*IMAGENET_DEPTHS[depth], default_shortcut="B", **kwargs)


def resnet18(**kwargs: Any) -> ResNet:
    """ResNet-18 (Table 1); keyword options as for :class:`ResNet`, shortcut default "B"."""
    return _imagenet_resnet(18, **kwargs)


def resnet34(**kwargs: Any) -> ResNet:
    """ResNet-34 (Table 1)."""
    return _imagenet_resnet(34, **kwargs)


def resnet50(**kwargs: Any) -> ResNet:
    """ResNet-50 (Table 1)."""
    return _imagenet_resnet(50, **kwargs)


def resnet101(**kwargs: Any) -> ResNet:
    """ResNet-101 (Table 1)."""
    return _imagenet_resnet(101, **kwargs)


def resnet152(**kwargs: Any) -> ResNet:
    """ResNet-152 (Table 1)."""
    return _imagenet_resnet(152, **kwargs)


def plain18(**kwargs: Any) -> ResNet:
    """Plain-18: ResNet-18's stack without shortcuts (Table 2)."""
    return _imagenet_resnet(18, plain=True, **kwargs)


def plain34(**kwargs: Any) -> ResNet:
    """Plain-34 (Table 2, Fig. 4)."""
    return _imagenet_resnet(34, plain=True, **kwargs)


def plain50(**kwargs: Any) -> ResNet:
    """Plain-50: not in the paper; ResNet-50's stack without shortcuts."""
    return _imagenet_resnet(50, plain=True, **kwargs)


def plain101(**kwargs: Any) -> ResNet:
    """Plain-101: not in the paper; ResNet-101's stack without shortcuts."""
    return _imagenet_resnet(101, plain=True, **kwargs)


def plain152(**kwargs: Any) -> ResNet:
    """Plain-152: not in the paper; ResNet-152's stack without shortcuts."""
    return _imagenet_resnet(152, plain=True, **kwargs)


_OPTIONS = ("num_classes", "in_channels", "stride_in_1x1", "zero_init_residual", "norm_layer")
for _factory in (resnet18, resnet34, resnet50, resnet101, resnet152):
    attach_builder(_factory.__name__, _factory, options=(*_OPTIONS, "shortcut"))
for _factory in (plain18, plain34, plain50, plain101, plain152):
    attach_builder(_factory.__name__, _factory, options=_OPTIONS)
