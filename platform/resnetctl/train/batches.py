"""Batches on their way into the model: the loader types, the move to the device, autocast."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

Batch = tuple[torch.Tensor, torch.Tensor]
Loader = Iterable[Batch]

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """The autocast context of `train.precision` (none for fp32)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(
    images: torch.Tensor, labels: torch.Tensor, device: torch.device, channels_last: bool
) -> Batch:
    """A batch on `device`, images in channels-last when asked, labels as a flat int64."""
    images = images.to(device, non_blocking=True)
    if channels_last and images.dim() == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    # Raw DALI iterators hand labels back as int32 of shape (N, 1); accept both.
    labels = labels.to(device, non_blocking=True).view(-1).long()
    return images, labels
