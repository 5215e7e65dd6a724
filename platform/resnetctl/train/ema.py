"""An exponential moving average of a model's weights (`train.ema`).

Written out rather than `torch.optim.swa_utils.AveragedModel`: the warm-up decay depends on the
update count, and BN's integer `num_batches_tracked` must be copied, not interpolated. Every
rank keeps its own copy; parameters are identical across ranks (DDP), BN buffers are not, so
validation broadcasts rank 0's EMA buffers first, like the raw model's.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from resnetctl.spec.train import EMASpec

log = logging.getLogger(__name__)


class WeightsEMA:
    """`module` holds the average; `update(model)` folds in the model's current weights."""

    def __init__(self, model: nn.Module, spec: EMASpec) -> None:
        self.spec = spec
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.updates = 0  # updates folded in so far

    def decay(self, update: int) -> float:
        """The decay of the `update`-th update (0-based)."""
        if not self.spec.warmup:
            return self.spec.decay
        return min(self.spec.decay, (1 + update) / (10 + update))

    def due(self, step: int) -> bool:
        """Whether the optimiser step count `step` triggers an update."""
        return step % self.spec.every_n_steps == 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema = d * ema + (1 - d) * weights, for parameters and floating buffers; integer
        buffers (BN's batch counter) are copied."""
        source = model.state_dict()
        averaged: list[torch.Tensor] = []
        current: list[torch.Tensor] = []
        for key, mine in self.module.state_dict().items():
            theirs = source[key].detach()
            if mine.is_floating_point():
                averaged.append(mine)
                current.append(theirs.to(mine.dtype))
            else:
                mine.copy_(theirs)
        if averaged:
            torch._foreach_lerp_(averaged, current, 1.0 - self.decay(self.updates))
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update count (which sets the warm-up decay)."""
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore `state_dict()` output."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])

    def resume(self, state: Mapping[str, Any] | None, model: nn.Module, warn: bool) -> None:
        """Restore a checkpoint's EMA; a checkpoint of a run without EMA (`state` None)
        starts the average from `model`, the weights it resumed."""
        if state:
            self.load_state_dict(state)
            return
        self.reset(model)
        if warn:
            log.warning("the checkpoint has no EMA weights: the EMA starts from its weights")

    def reset(self, model: nn.Module) -> None:
        """Start the average again from `model`'s weights."""
        self.module.load_state_dict(model.state_dict())
        self.updates = 0
