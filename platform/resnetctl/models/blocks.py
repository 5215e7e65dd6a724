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
    changes_shape = stride != 1 or in_planes != out_planes
    if option == "A":
        return ZeroPadShortcut(stride, out_planes - in_planes) if changes_shape else None
    if option == "B" and not changes_shape:
        return None
    return nn.Sequential(conv1x1(in_planes, out_planes, stride), norm_layer(out_planes))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (ResNet-18/34 and the CIFAR nets).

    ``residual=False`` gives the plain block: same layers, nothing added after the second BN.
    ``stride_in_1x1`` is accepted so every block type shares one constructor; it has no effect here.
    """

    expansion: int = 1

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
        norm_layer = norm_layer or nn.BatchNorm2d
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def zero_init_last_norm(self) -> None:
        """Start the residual branch at zero so the block begins as an identity."""
        if getattr(self.bn2, "weight", None) is not None:
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        # The paper puts the second nonlinearity after the addition.
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand by ``expansion`` (ResNet-50/101/152).

    ``stride_in_1x1=True`` is the paper's placement (v1): the stride-2 of conv3_1, conv4_1 and
    conv5_1 sits in the first 1x1, so the 3x3 runs on the smaller map; that is what Table 1's FLOPs
    count. ``False`` is torchvision's "v1.5" (stride in the 3x3): ~7% more FLOPs at ResNet-50 and
    slightly better accuracy because the 1x1 no longer discards three quarters of its input.
    """

    expansion: int = 4

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
        norm_layer = norm_layer or nn.BatchNorm2d
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, planes, stride_1x1)
        self.bn1 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn2 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride
        self.residual = residual

    def zero_init_last_norm(self) -> None:
        """Start the residual branch at zero so the block begins as an identity."""
        if getattr(self.bn3, "weight", None) is not None:
            nn.init.zeros_(self.bn3.weight)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.residual:
            out = out + (x if self.downsample is None else self.downsample(x))
        return self.relu(out)


class PreActBasicBlock(nn.Module):
    """Full pre-activation block (He et al. 2016, "Identity Mappings"): BN-ReLU-conv, twice.

    Nothing follows the addition, so the shortcut path is a clean identity from block to block.
    ``preact_shortcut`` feeds the shortcut the pre-activated input: done where a projection starts
    (its BN-ReLU is then shared) and for the network's first block, whose input is a bare conv.
    """

    expansion: int = 1

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
        norm_layer = norm_layer or nn.BatchNorm2d
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = norm_layer(planes)
        self.conv2 = conv3x3(planes, planes)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample
        self.preact_shortcut = preact_shortcut

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = pre if self.preact_shortcut else x
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    """Full pre-activation bottleneck (ResNet-164/1001 of "Identity Mappings")."""

    expansion: int = 4

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
        norm_layer = norm_layer or nn.BatchNorm2d
        self.bn1 = norm_layer(inplanes)
        self.conv1 = conv1x1(inplanes, planes)
        self.bn2 = norm_layer(planes)
        # "Identity Mappings" strides the 3x3, as fb.resnet.torch does.
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = norm_layer(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.relu = nn.ReLU(inplace=False)
        self.downsample = downsample
        self.preact_shortcut = preact_shortcut

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        shortcut = pre if self.preact_shortcut else x
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return out + shortcut
