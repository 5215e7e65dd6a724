"""Residual blocks of He et al. (2016), their shortcuts (options A, B, C) and their plain twins.

The blocks keep torchvision's attribute names (``conv1``, ``bn1``, ..., ``downsample``) so that a
torchvision ResNet's state dict loads into ours unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]

#: The shortcut options of the paper's Table 3.
SHORTCUTS: tuple[str, ...] = ("A", "B", "C")


def check_choice(option: str, value: Any, allowed: Collection[Any]) -> None:
    """Raise ``ValueError`` naming ``option`` and its allowed values unless ``value`` is one."""
    if value not in allowed:
        choices = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{option} must be one of {choices}; got {value!r}")


def check_positive_int(option: str, value: Any) -> None:
    """Raise ``ValueError`` unless ``value`` is an int >= 1 (bools are refused: they are ints)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{option} must be a positive integer; got {value!r}")


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1; no bias because a norm layer follows every convolution."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: identity that subsamples by ``stride`` and zero-pads the extra channels.

    It has no parameters, which is the point: an option-A ResNet has exactly the parameters of its
    plain twin, so the paper's plain-vs-residual comparison is not confounded by capacity.
    """

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        if extra_channels < 0:
            raise ValueError("option A cannot reduce channels; use a projection shortcut")
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.stride != 1:
            # Same output size as a stride-s 1x1 conv or padded 3x3, odd map sizes included.
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra_channels={self.extra_channels}"


def changes_shape(in_planes: int, out_planes: int, stride: int) -> bool:
    """Whether a block's output differs from its input in channels or map size."""
    return stride != 1 or in_planes != out_planes


def make_shortcut(
    option: str | None,
    in_planes: int,
    out_planes: int,
    stride: int,
    norm_layer: NormLayer,
) -> nn.Module | None:
    """Shortcut module of one block; ``None`` means identity (or, for ``option=None``, none at all).

    The returned projection is ``Sequential(conv1x1, norm)``, torchvision's ``downsample`` layout.
    """
    if option is None:
        return None
    check_choice("shortcut", option, SHORTCUTS)
    reshapes = changes_shape(in_planes, out_planes, stride)
    if option == "A":
        return ZeroPadShortcut(stride, out_planes - in_planes) if reshapes else None
    if option == "B" and not reshapes:
        return None
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm_layer(out_planes))


class _Block(nn.Module):
    """A block's layers, in torchvision's names: the branch's convolutions (``conv1``,
    ``conv2``, ...) each with its norm layer (``bn1``, ``bn2``, ...), a ReLU and the shortcut
    projection ``downsample``."""

    expansion: int = 1

    def _add_layers(
        self,
        convs: list[nn.Conv2d],
        norm_layer: NormLayer | None,
        downsample: nn.Module | None,
        *,
        preactivation: bool,
    ) -> None:
        """Register the layers in the order they run: a pre-activation block normalises each
        convolution's input, the paper's block its output."""
        norm_layer = norm_layer or nn.BatchNorm2d
        for index, conv in enumerate(convs, 1):
            if preactivation:
                self.add_module(f"bn{index}", norm_layer(conv.in_channels))
            self.add_module(f"conv{index}", conv)
            if not preactivation:
                self.add_module(f"bn{index}", norm_layer(conv.out_channels))
        self.relu = nn.ReLU(inplace=not preactivation)
        self.downsample = downsample


class _PostActivationBlock(_Block):
    """What the paper's blocks share: a branch of convolutions, each followed by its norm layer
    (``conv1``, ``bn1``, ``conv2``, ...), ReLU between them, the shortcut added after the last norm
    and a ReLU after the addition. A subclass names the convolutions (``branch``) and runs them.

    ``residual=False`` gives the plain block: same layers, nothing added after the last norm.
    """

    #: The branch's last norm layer, zeroed by ``zero_init_last_norm``.
    last_norm: str

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer | None = None,
        *,
        residual: bool = True,
        stride_in_1x1: bool = True,
    ) -> None:
        super().__init__()
        convs = self.branch(inplanes, planes, stride, stride_in_1x1)
        self._add_layers(convs, norm_layer, downsample, preactivation=False)
        self.stride = stride
        self.residual = residual

    @classmethod
    def branch(
        cls, inplanes: int, planes: int, stride: int, stride_in_1x1: bool
    ) -> list[nn.Conv2d]:
        """The branch's convolutions, in order (named ``conv1``, ``conv2``, ...)."""
        raise NotImplementedError

    @classmethod
    def build(
        cls,
        inplanes: int,
        planes: int,
        stride: int,
        norm_layer: NormLayer,
        *,
        shortcut: str | None,
        stride_in_1x1: bool = True,
    ) -> _PostActivationBlock:
        """The block with the shortcut of option ``shortcut`` (``None``: a plain block)."""
        return cls(
            inplanes,
            planes,
            stride,
            make_shortcut(shortcut, inplanes, planes * cls.expansion, stride, norm_layer),
            norm_layer,
            residual=shortcut is not None,
            stride_in_1x1=stride_in_1x1,
        )

    def zero_init_last_norm(self) -> None:
        """Start the residual branch at zero so the block begins as an identity."""
        norm = getattr(self, self.last_norm)
        if getattr(norm, "weight", None) is not None:
            nn.init.zeros_(norm.weight)

    def add_shortcut(self, out: Tensor, x: Tensor) -> Tensor:
        """The block's output from its branch's ``out`` and its input ``x``."""
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        # The paper puts the second nonlinearity after the addition.
        return self.relu(out)


class BasicBlock(_PostActivationBlock):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets).

    ``stride_in_1x1`` is accepted so every block type shares one constructor; it has no effect here.
    """

    expansion = 1
    last_norm = "bn2"

    @classmethod
    def branch(
        cls, inplanes: int, planes: int, stride: int, stride_in_1x1: bool
    ) -> list[nn.Conv2d]:
        return [conv3x3(inplanes, planes, stride), conv3x3(planes, planes)]

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.add_shortcut(self.bn2(self.conv2(out)), x)


class Bottleneck(_PostActivationBlock):
    """1x1 reduce, 3x3, 1x1 expand by ``expansion`` (ResNet-50/101/152).

    ``stride_in_1x1=True`` is the paper's placement (v1): the stride-2 of conv3_1, conv4_1 and
    conv5_1 sits in the first 1x1, so the 3x3 runs on the smaller map; that is what Table 1's FLOPs
    count. ``False`` is torchvision's "v1.5" (stride in the 3x3): ~7% more FLOPs at ResNet-50 and
    slightly better accuracy because the 1x1 no longer discards three quarters of its input.
    """

    expansion = 4
    last_norm = "bn3"

    @classmethod
    def branch(
        cls, inplanes: int, planes: int, stride: int, stride_in_1x1: bool
    ) -> list[nn.Conv2d]:
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        return [
            conv1x1(inplanes, planes, stride_1x1),
            conv3x3(planes, planes, stride_3x3),
            conv1x1(planes, planes * cls.expansion),
        ]

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.add_shortcut(self.bn3(self.conv3(out)), x)


class _PreActivationBlock(_Block):
    """Full pre-activation block (He et al. 2016, "Identity Mappings"): each convolution of the
    branch preceded by its norm layer and a ReLU (``bn1``, ``conv1``, ``bn2``, ...).

    Nothing follows the addition, so the shortcut path is a clean identity from block to block.
    ``preact_shortcut`` feeds the shortcut the pre-activated input: done where a projection starts
    (its BN-ReLU is then shared) and for the network's first block, whose input is a bare conv.
    """

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer | None = None,
        *,
        preact_shortcut: bool = False,
    ) -> None:
        super().__init__()
        convs = self.branch(inplanes, planes, stride)
        self._add_layers(convs, norm_layer, downsample, preactivation=True)
        self.preact_shortcut = preact_shortcut

    @classmethod
    def branch(cls, inplanes: int, planes: int, stride: int) -> list[nn.Conv2d]:
        """The branch's convolutions, in order (named ``conv1``, ``conv2``, ...)."""
        raise NotImplementedError

    @classmethod
    def build(
        cls, inplanes: int, planes: int, stride: int, norm_layer: NormLayer
    ) -> _PreActivationBlock:
        """The block with a projection (1x1 conv, no norm: the next block's BN-ReLU follows)
        where the shape changes, identity elsewhere."""
        out_planes = planes * cls.expansion
        projects = changes_shape(inplanes, out_planes, stride)
        downsample = conv1x1(inplanes, out_planes, stride) if projects else None
        return cls(inplanes, planes, stride, downsample, norm_layer, preact_shortcut=projects)

    def preactivate(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The branch's input (``x`` after the first BN-ReLU) and the shortcut's output."""
        pre = self.relu(self.bn1(x))
        shortcut = pre if self.preact_shortcut else x
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        return pre, shortcut


class PreActBasicBlock(_PreActivationBlock):
    """Two pre-activated 3x3 convolutions (ResNet-110 of "Identity Mappings")."""

    expansion = 1

    @classmethod
    def branch(cls, inplanes: int, planes: int, stride: int) -> list[nn.Conv2d]:
        return [conv3x3(inplanes, planes, stride), conv3x3(planes, planes)]

    def forward(self, x: Tensor) -> Tensor:
        pre, shortcut = self.preactivate(x)
        out = self.conv1(pre)
        return self.conv2(self.relu(self.bn2(out))) + shortcut


class PreActBottleneck(_PreActivationBlock):
    """Full pre-activation bottleneck (ResNet-164/1001 of "Identity Mappings")."""

    expansion = 4

    @classmethod
    def branch(cls, inplanes: int, planes: int, stride: int) -> list[nn.Conv2d]:
        # "Identity Mappings" strides the 3x3, as fb.resnet.torch does.
        return [
            conv1x1(inplanes, planes),
            conv3x3(planes, planes, stride),
            conv1x1(planes, planes * cls.expansion),
        ]

    def forward(self, x: Tensor) -> Tensor:
        pre, shortcut = self.preactivate(x)
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return self.conv3(self.relu(self.bn3(out))) + shortcut
