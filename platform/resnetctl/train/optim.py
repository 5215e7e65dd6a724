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


#: Devices whose fused SGD kernel takes `found_inf`: a step is skipped on the device.
FUSED_DEVICES = ("cpu", "cuda")


def build_optimizer(model: nn.Module, sgd: SGDSpec, lr: float) -> torch.optim.SGD:
    """The run's SGD optimiser; the schedule overwrites `lr` before every step.

    Fused where torch has the kernel (CPU and CUDA, floating-point parameters): one pass over
    the parameters, and a `found_inf` flag on the device skips a step without a host sync (see
    `train.nonfinite`). Momentum buffers start at zero rather than at the first gradient, which
    is the same first step (buffer = 0 * momentum + gradient) and keeps a first step that is
    skipped from leaving them uninitialised."""
    groups = param_groups(model, sgd.weight_decay, sgd.no_weight_decay_on_bn)
    params = [p for group in groups for p in group["params"]]  # type: ignore[attr-defined]
    fused = bool(params) and all(
        p.device.type in FUSED_DEVICES and p.is_floating_point() for p in params
    )
    optimizer = torch.optim.SGD(
        groups,
        lr=lr,
        momentum=sgd.momentum,
        nesterov=sgd.nesterov,
        weight_decay=sgd.weight_decay,
        fused=fused or None,
    )
    if sgd.momentum:
        for param in params:
            optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    return optimizer


def skips_on_device(optimizer: torch.optim.Optimizer) -> bool:
    """Whether `optimizer.step` honours a `found_inf` flag set on it (fused kernels do)."""
    return all(group.get("fused") for group in optimizer.param_groups)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
