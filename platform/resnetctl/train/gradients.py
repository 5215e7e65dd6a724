"""Gradient accumulation under DDP and gradient clipping, for `Runner.accumulated_step`."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from resnetctl.spec import JobSpec


def no_sync(model: nn.Module, last: bool) -> AbstractContextManager[Any]:
    """DDP's `no_sync()` for every micro-batch but the last of an optimiser step, so gradients
    accumulate locally and are all-reduced once, by the last backward. Forward and backward of
    the micro-batch must both run inside it (DDP prepares its reducer in the forward). A model
    that is not DDP-wrapped (one process) has nothing to skip."""
    skip = getattr(model, "no_sync", None)
    if last or skip is None:
        return nullcontext()
    return skip()


def clip_gradients(
    model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, spec: JobSpec
) -> torch.Tensor | None:
    """Clip the global gradient norm to `train.grad_clip_norm`; returns the norm before
    clipping, on the device (no host sync), or None when clipping is off. Under fp16 the
    gradients are unscaled first, so the threshold is in the units of the true gradients; the
    scaler then does not unscale them again in `step`."""
    limit = spec.train.grad_clip_norm
    if limit is None:
        return None
    scaler.unscale_(optimizer)
    params = [p for p in model.parameters() if p.grad is not None]
    return torch.nn.utils.clip_grad_norm_(params, limit)
