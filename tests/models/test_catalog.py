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


def test_depth_rule_and_is_depth_agree_with_the_registry_names() -> None:
    from resnetctl.models.catalog import depth_rule, is_depth, model_name

    assert depth_rule("cifar").startswith("CIFAR nets have depth 6n+2")
    assert "18, 34, 50, 101, 152" in depth_rule("imagenet")
    assert [d for d in range(1, 40) if is_depth("cifar", d)] == [8, 14, 20, 26, 32, 38]
    assert [d for d in (18, 20, 34, 50, 56) if is_depth("imagenet", d, plain=True)] == [18, 34, 50]
    assert model_name("imagenet", 50) == "resnet50" and not is_depth("imagenet", 19)
