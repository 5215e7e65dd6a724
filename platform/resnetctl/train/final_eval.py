"""The end-of-run evaluation with the paper's test protocol (`train.final_eval`).

Per-epoch validation is single-crop; the paper's ImageNet tables are 10-crop. Evaluating every
epoch with 10 crops would make validation ten times slower, so the run keeps the weights of its
best checkpoint (by `checkpoint.metric`, the ranking Ray uses to keep checkpoints) and evaluates
them once, after the last epoch. The best weights travel in every checkpoint so that a resumed
run still evaluates the best of the whole run; when the checkpoint's own weights are the best,
only the epoch number is stored.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from resnetctl.spec import JobSpec


def _cpu_copy(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().to("cpu", copy=True) for key, value in state.items()}


class BestWeights:
    """The best checkpointed weights so far, as a CPU copy (identical on every rank: ranks
    validate the same weights and take the same metric, reduced over ranks)."""

    def __init__(self, spec: JobSpec) -> None:
        self.metric = spec.checkpoint.metric
        self.mode = spec.checkpoint.mode
        self.keep_best = spec.train.final_eval is None or spec.train.final_eval.weights == "best"
        self.epoch: int | None = None
        self.value: float | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def _better(self, value: float) -> bool:
        if self.value is None or not self.keep_best:
            return True
        return value < self.value if self.mode == "min" else value > self.value

    def offer(self, epoch: int, metrics: Mapping[str, float], model: nn.Module) -> bool:
        """Keep `model`'s weights if the checkpoint of `epoch` is the best so far."""
        value = float(metrics[self.metric])
        if not math.isfinite(value) or not self._better(value):
            return False
        self.epoch, self.value = epoch, value
        self.weights = _cpu_copy(model.state_dict())
        return True

    def state_dict(self, checkpoint_epoch: int) -> dict[str, Any]:
        """What a checkpoint of `checkpoint_epoch` stores (no weights when they are its own)."""
        own = self.epoch == checkpoint_epoch
        return {
            "epoch": self.epoch,
            "value": self.value,
            "weights": None if own or self.weights is None else self.weights,
        }

    def load_state_dict(
        self, state: Mapping[str, Any], checkpoint_weights: Mapping[str, torch.Tensor]
    ) -> None:
        """Restore `state_dict` output; `checkpoint_weights` are the checkpoint's model."""
        if state.get("epoch") is None:
            return
        self.epoch = int(state["epoch"])
        self.value = float(state["value"])
        weights = state.get("weights")
        self.weights = _cpu_copy(weights if weights is not None else checkpoint_weights)
