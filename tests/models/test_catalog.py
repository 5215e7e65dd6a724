"""The torch-free catalog and the registry describe the same nets: one table of depths."""

from __future__ import annotations

import pytest

from resnetctl.models import catalog, create_model, get_model_info, list_models


def test_every_listed_net_has_a_builder_and_the_same_facts() -> None:
    listed = {name: info for name, info in catalog._INFOS.items() if not name.startswith("test_")}
    assert sorted(listed) == sorted(n for n in list_models() if not n.startswith("test_"))
    for name, info in listed.items():
        assert get_model_info(name) == info


@pytest.mark.parametrize("depth", sorted(catalog.IMAGENET_STAGES))
def test_imagenet_stages_are_what_the_builder_builds(depth: int) -> None:
    kind, layers = catalog.IMAGENET_STAGES[depth]
    model = create_model(f"resnet{depth}")
    assert tuple(len(getattr(model, f"layer{i + 1}")) for i in range(4)) == layers
    block = type(model.layer1[0]).__name__
    assert block == {"basic": "BasicBlock", "bottleneck": "Bottleneck"}[kind]


def test_a_cifar_depth_outside_the_table_resolves_by_the_rule() -> None:
    info = catalog.model_info("cifar_resnet26")
    assert (info.family, info.depth, info.shortcut) == ("cifar", 26, "A")
    assert len(create_model("cifar_resnet26").layer1) == 4
    with pytest.raises(catalog.UnknownModelError, match="6n\\+2"):
        catalog.model_info("cifar_resnet27")
