"""Parameter and multiply-add counts, measured on the model rather than derived from a formula."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from resnetctl.models.registry import create_model, get_model_info


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_size: int | tuple[int, int], in_channels: int = 3) -> int:
    """Multiply-adds of one forward pass on a single ``in_channels`` x H x W image.

    Counted by ``torch.utils.flop_counter.FlopCounterMode``, which counts convolutions and matrix
    products (2 FLOPs per multiply-add) but not BN, ReLU, pooling or additions: the convention of
    the paper's Table 1. The model runs in eval mode without autograd and is restored afterwards.
    """
    height, width = (input_size, input_size) if isinstance(input_size, int) else input_size
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    x = torch.zeros(1, in_channels, height, width, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _batch_norm_skipped(model), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@contextlib.contextmanager
def _batch_norm_skipped(model: nn.Module) -> Iterator[None]:
    """Run BN layers as identities while counting. The counter does not count BN (Table 1's
    convention) and BN keeps shapes, so the count is unchanged, but BN's decomposition under the
    counter was 70% of the time of counting a 1202-layer net on the meta device."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.forward = _identity  # type: ignore[method-assign]
    try:
        yield
    finally:
        for norm in norms:
            del norm.forward


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


@lru_cache(maxsize=128)
def _describe(name: str) -> tuple[tuple[str, Any], ...]:
    info = get_model_info(name)
    # On the meta device no arithmetic runs: the counter sees shapes only, so CIFAR-1202 is
    # counted in a second instead of a minute, with the same result.
    with torch.device("meta"):
        model = create_model(name)
    return (
        ("name", info.name),
        ("family", info.family),
        ("depth", info.depth),
        ("block", info.block),
        ("shortcut", info.shortcut),
        ("plain", info.plain),
        ("params", count_parameters(model)),
        ("macs", count_macs(model, info.input_size)),
        ("input_size", info.input_size),
        ("num_classes", info.num_classes),
    )


def describe(name: str) -> dict[str, Any]:
    """Name, family, depth, block, shortcut, plain, params, macs, input_size of model ``name``.

    Built with default options on the meta device and measured once per process; each call
    returns a fresh dict.
    """
    return dict(_describe(get_model_info(name).name))
