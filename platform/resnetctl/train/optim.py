"""SGD with momentum, optionally exempting BN parameters and biases from weight decay."""

from __future__ import annotations

import torch
from torch import nn

from resnetctl.spec.train import SGDSpec

# Normalisation layers whose affine parameters carry no weight decay in modern recipes.
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._BatchNorm,
    nn.GroupNorm,
    nn.LayerNorm,
)


def param_groups(
    model: nn.Module, weight_decay: float, no_weight_decay_on_bn: bool
) -> list[dict[str, object]]:
    """Parameter groups for the optimiser: one group with decay, plus one without decay for
    normalisation parameters and biases when `no_weight_decay_on_bn` is set."""
    if not no_weight_decay_on_bn:
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": weight_decay}]
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in model.modules():
        exempt_module = isinstance(module, NORM_LAYERS)
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            (no_decay if exempt_module or name == "bias" else decay).append(param)
    groups: list[dict[str, object]] = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, sgd: SGDSpec, lr: float) -> torch.optim.SGD:
    """The run's SGD optimiser; the schedule overwrites `lr` before every step."""
    return torch.optim.SGD(
        param_groups(model, sgd.weight_decay, sgd.no_weight_decay_on_bn),
        lr=lr,
        momentum=sgd.momentum,
        nesterov=sgd.nesterov,
        weight_decay=sgd.weight_decay,
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
