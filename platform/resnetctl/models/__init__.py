"""The paper's model zoo: ImageNet ResNets and plain nets (Table 1), CIFAR-10 nets (Table 6).

>>> from resnetctl.models import create_model, list_models
>>> model = create_model("resnet50", shortcut="B", stride_in_1x1=True)
>>> "cifar_resnet110" in list_models("cifar")
True
"""

from resnetctl.models.blocks import (
    SHORTCUTS,
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    ZeroPadShortcut,
)
from resnetctl.models.cifar import CIFAR_DEPTHS, PreActResNet, cifar_preact_resnet, cifar_resnet
from resnetctl.models.complexity import count_macs, count_parameters, describe
from resnetctl.models.imagenet import IMAGENET_DEPTHS, ResNet
from resnetctl.models.registry import (
    FAMILIES,
    ModelInfo,
    UnknownModelError,
    create_model,
    get_model_info,
    list_models,
    model_name,
    register_model,
    register_series,
    valid_depths,
)

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
    "register_series",
    "valid_depths",
]
