"""What stored models depend on. Every registered model keeps its state dict: the same keys, in
the same order, with the same shapes. Checkpoints, fine-tuning sources and logged weights are read
by these names, and an optimizer's state follows the order of the parameters, so a refactor of the
blocks or the trunk that renamed, reordered or reshaped one would break every file written before
it. And a pickled network names its classes by module path."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from resnetctl.models import create_model, get_model_info, list_models

# (name, shortcut option or None for the default) -> (number of entries, digest of the ordered
# "key shape" lines); taken from the models as they were when this test was written.
EXPECTED: dict[tuple[str, str | None], tuple[int, str]] = {
    ("cifar_plain20", None): (116, "28a0d5e26aad4d86"),
    ("cifar_resnet20", None): (116, "28a0d5e26aad4d86"),
    ("cifar_plain32", None): (188, "ddc0be0bb73a15cd"),
    ("cifar_resnet32", None): (188, "ddc0be0bb73a15cd"),
    ("cifar_plain44", None): (260, "d13c730397390faf"),
    ("cifar_resnet44", None): (260, "d13c730397390faf"),
    ("cifar_plain56", None): (332, "58531dd8472cd8f1"),
    ("cifar_resnet56", None): (332, "58531dd8472cd8f1"),
    ("cifar_plain110", None): (656, "d12c35714c8d1fac"),
    ("cifar_preact_resnet110", None): (658, "5c28c4ea6f759d22"),
    ("cifar_resnet110", None): (656, "d12c35714c8d1fac"),
    ("cifar_preact_resnet164", None): (983, "6cd3a9c5d6b2eab7"),
    ("cifar_preact_resnet1001", None): (6005, "934ce5ca8b6e5e98"),
    ("cifar_plain1202", None): (7208, "988edd93838cabdb"),
    ("cifar_resnet1202", None): (7208, "988edd93838cabdb"),
    ("plain18", None): (104, "c59ba534337a3855"),
    ("resnet18", None): (122, "84fb10d9c6905a1c"),
    ("plain34", None): (200, "3140070d16e4d2f4"),
    ("resnet34", None): (218, "28f9096d51307499"),
    ("plain50", None): (296, "7dcc06200076f369"),
    ("resnet50", None): (320, "d7e4f8bb0a536344"),
    ("plain101", None): (602, "941fc9faf9e681b0"),
    ("resnet101", None): (626, "02c0f34f4842751f"),
    ("plain152", None): (908, "77ef42d62aef6946"),
    ("resnet152", None): (932, "685c66205bc823aa"),
    # Each shortcut option on a basic and a bottleneck net of each family.
    ("cifar_resnet20", "A"): (116, "28a0d5e26aad4d86"),
    ("cifar_resnet20", "B"): (128, "4a21c009158a5999"),
    ("cifar_resnet20", "C"): (170, "69ab060448512c71"),
    ("resnet18", "A"): (104, "c59ba534337a3855"),
    ("resnet18", "B"): (122, "84fb10d9c6905a1c"),
    ("resnet18", "C"): (152, "bd22b4a7157e4f8b"),
    ("resnet50", "A"): (296, "7dcc06200076f369"),
    ("resnet50", "B"): (320, "d7e4f8bb0a536344"),
    ("resnet50", "C"): (392, "201f5feeb2d29a4a"),
}


def _key_lines(model: nn.Module) -> list[str]:
    return [f"{key} {tuple(value.shape)}" for key, value in model.state_dict().items()]


def _build(name: str, **options: str) -> nn.Module:
    # Keys and shapes do not depend on the values. The ImageNet nets spend their build filling
    # tens of millions of weights, which the meta device skips; the CIFAR nets' thousands of
    # small layers build faster on the CPU.
    device = "meta" if get_model_info(name).family == "imagenet" else "cpu"
    with torch.device(device):
        return create_model(name, **options)


def test_every_registered_model_is_pinned() -> None:
    assert sorted(list_models()) == sorted(name for name, shortcut in EXPECTED if not shortcut)


@pytest.mark.parametrize(
    ("name", "shortcut"), list(EXPECTED), ids=[f"{n}-{s or 'default'}" for n, s in EXPECTED]
)
def test_state_dict_keys_and_shapes_are_unchanged(name: str, shortcut: str | None) -> None:
    options = {} if shortcut is None else {"shortcut": shortcut}
    lines = _key_lines(_build(name, **options))
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    assert (len(lines), digest) == EXPECTED[name, shortcut], lines[:8]


def test_the_network_classes_stay_where_older_pickles_find_them() -> None:
    from resnetctl.models import cifar, imagenet, trunk

    # Pickled before the trunk had a module of its own (torch.save of a module, MLflow's pickle
    # format): `resnetctl.models.imagenet.ResNet` and `resnetctl.models.cifar.PreActResNet`.
    assert imagenet.ResNet is trunk.ResNet
    assert cifar.PreActResNet is trunk.PreActResNet
