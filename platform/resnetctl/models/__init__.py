"""The paper's model zoo: ImageNet ResNets and plain nets (Table 1), CIFAR-10 nets (Table 6).

>>> from resnetctl.models import create_model, list_models
>>> model = create_model("resnet50", shortcut="B", stride_in_1x1=True)
>>> "cifar_resnet110" in list_models("cifar")
True

Names are loaded on first use: `resnetctl.models.catalog` (what each net is) needs no torch, and
validating a job spec imports only that.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resnetctl.models.blocks import (
        SHORTCUTS,
        BasicBlock,
        Bottleneck,
        PreActBasicBlock,
        PreActBottleneck,
        ZeroPadShortcut,
    )
    from resnetctl.models.catalog import CIFAR_DEPTHS, FAMILIES, ModelInfo, UnknownModelError
    from resnetctl.models.cifar import cifar_preact_resnet, cifar_resnet
    from resnetctl.models.complexity import count_macs, count_parameters, describe
    from resnetctl.models.imagenet import IMAGENET_DEPTHS
    from resnetctl.models.registry import (
        attach_builder,
        attach_series,
        create_model,
        get_model_info,
        list_models,
        model_name,
        register_model,
        valid_depths,
    )
    from resnetctl.models.trunk import PreActResNet, ResNet

# Each public name -> the submodule that defines it.
_HOMES = {
    "CIFAR_DEPTHS": "catalog",
    "FAMILIES": "catalog",
    "IMAGENET_DEPTHS": "imagenet",
    "SHORTCUTS": "blocks",
    "BasicBlock": "blocks",
    "Bottleneck": "blocks",
    "ModelInfo": "catalog",
    "PreActBasicBlock": "blocks",
    "PreActBottleneck": "blocks",
    "PreActResNet": "trunk",
    "ResNet": "trunk",
    "UnknownModelError": "catalog",
    "ZeroPadShortcut": "blocks",
    "attach_builder": "registry",
    "attach_series": "registry",
    "cifar_preact_resnet": "cifar",
    "cifar_resnet": "cifar",
    "count_macs": "complexity",
    "count_parameters": "complexity",
    "create_model": "registry",
    "describe": "complexity",
    "get_model_info": "registry",
    "list_models": "registry",
    "model_name": "registry",
    "register_model": "registry",
    "valid_depths": "registry",
}
__all__ = [
    "CIFAR_DEPTHS",
    "FAMILIES",
    "IMAGENET_DEPTHS",
    "SHORTCUTS",
    "BasicBlock",
    "Bottleneck",
    "ModelInfo",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
    "ResNet",
    "UnknownModelError",
    "ZeroPadShortcut",
    "attach_builder",
    "attach_series",
    "cifar_preact_resnet",
    "cifar_resnet",
    "count_macs",
    "count_parameters",
    "create_model",
    "describe",
    "get_model_info",
    "list_models",
    "model_name",
    "register_model",
    "valid_depths",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
