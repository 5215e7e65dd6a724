"""The CIFAR-10 nets of section 4.2 (depth 6n+2, Table 6) and, from He et al.'s "Identity
Mappings in Deep Residual Networks" (ECCV 2016), the pre-activation ResNet-110/164/1001.
"""

from __future__ import annotations

from functools import partial

from resnetctl.models.blocks import (
    BasicBlock,
    NormLayer,
    PreActBasicBlock,
    PreActBottleneck,
    check_choice,
)
from resnetctl.models.catalog import (
    CIFAR_DEPTH_RULE,
    CIFAR_DEPTHS,
    PREACT_DEPTHS,
    PREFIXES,
    is_cifar_depth,
)
from resnetctl.models.registry import attach_builder, attach_series

# Networks pickled before the trunk had a module of its own name their class
# `resnetctl.models.cifar.PreActResNet`: keep it importable from here.
from resnetctl.models.trunk import PreActBlock, PreActResNet, ResNet, build_resnet

#: Section 4.2's trunk: a 3x3 stem of 16 filters without pooling, stages of 16, 32 and 64.
_CIFAR_TRUNK = {"widths": (16, 32, 64), "stem_kernel_size": 3, "stem_stride": 1, "stem_pool": False}


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
    n = (depth - 2) // 6
    return build_resnet(
        BasicBlock,
        [n, n, n],
        plain=plain,
        shortcut=shortcut,
        default_shortcut="A",
        num_classes=num_classes,
        in_channels=in_channels,
        zero_init_residual=zero_init_residual,
        norm_layer=norm_layer,
        **_CIFAR_TRUNK,
    )


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
