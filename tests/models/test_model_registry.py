"""The registry: names, metadata, errors that say what would have worked, and every model runs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from resnetctl.models import (
    ModelInfo,
    UnknownModelError,
    create_model,
    get_model_info,
    list_models,
    model_name,
    register_model,
    valid_depths,
)
from resnetctl.models import registry as registry_module

PAPER_IMAGENET = [18, 34, 50, 101, 152]
PAPER_CIFAR = [20, 32, 44, 56, 110, 1202]


def test_every_paper_model_is_registered() -> None:
    names = set(list_models())
    for depth in PAPER_IMAGENET:
        assert {f"resnet{depth}", f"plain{depth}"} <= names
    for depth in PAPER_CIFAR:
        assert {f"cifar_resnet{depth}", f"cifar_plain{depth}"} <= names


def test_list_models_is_sorted_by_family_then_depth() -> None:
    infos = [get_model_info(n) for n in list_models()]
    keys = [(i.family, i.depth) for i in infos]
    assert keys == sorted(keys)
    # Natural, not lexical: resnet101 must not come before resnet18.
    imagenet = list_models("imagenet")
    assert imagenet.index("resnet18") < imagenet.index("resnet50") < imagenet.index("resnet101")


def test_list_models_filters_by_family() -> None:
    cifar = list_models("cifar")
    imagenet = list_models("imagenet")
    assert cifar and imagenet
    assert all(get_model_info(n).family == "cifar" for n in cifar)
    assert sorted(cifar + imagenet) == sorted(list_models())
    with pytest.raises(ValueError, match="imagenet"):
        list_models("imagnet")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet50", ("imagenet", 50, "bottleneck", False, "B", 224, 1000)),
        ("plain34", ("imagenet", 34, "basic", True, "none", 224, 1000)),
        ("cifar_resnet56", ("cifar", 56, "basic", False, "A", 32, 10)),
        ("cifar_plain20", ("cifar", 20, "basic", True, "none", 32, 10)),
    ],
)
def test_model_info(name: str, expected: tuple[object, ...]) -> None:
    i = get_model_info(name)
    assert i.name == name
    assert (
        i.family,
        i.depth,
        i.block,
        i.plain,
        i.shortcut,
        i.input_size,
        i.num_classes,
    ) == expected


def test_model_info_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_model_info("resnet18").depth = 19  # type: ignore[misc]


@pytest.mark.parametrize(
    ("family", "depth", "plain", "name"),
    [
        ("imagenet", 50, False, "resnet50"),
        ("imagenet", 34, True, "plain34"),
        ("cifar", 56, False, "cifar_resnet56"),
        ("cifar", 56, True, "cifar_plain56"),
        ("cifar", 26, False, "cifar_resnet26"),
    ],
)
def test_model_name(family: str, depth: int, plain: bool, name: str) -> None:
    assert model_name(family, depth, plain) == name


def test_model_name_refuses_depths_that_do_not_exist() -> None:
    with pytest.raises(UnknownModelError, match="18, 34, 50, 101, 152"):
        model_name("imagenet", 19)
    with pytest.raises(UnknownModelError, match=r"6n\+2"):
        model_name("cifar", 21, plain=True)
    with pytest.raises(ValueError, match="family"):
        model_name("mnist", 20)


@pytest.mark.parametrize("name", ["resnet19", "plain19", "resnet200"])
def test_unknown_imagenet_depth_names_the_valid_depths(name: str) -> None:
    expected = "ImageNet ResNets have depths 18, 34, 50, 101, 152"
    with pytest.raises(UnknownModelError, match=expected):
        create_model(name)


@pytest.mark.parametrize("name", ["cifar_resnet21", "cifar_plain21", "cifar_resnet2"])
def test_unknown_cifar_depth_names_the_rule(name: str) -> None:
    with pytest.raises(UnknownModelError) as excinfo:
        get_model_info(name)
    message = str(excinfo.value)
    assert "6n+2" in message
    assert "20, 32, 44, 56, 110, 1202" in message
    assert "did you mean 'cifar_" in message  # the registered depth nearest to the one asked for


def test_unknown_depth_suggests_the_nearest_registered_depth() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'resnet18'"):
        create_model("resnet19")
    with pytest.raises(UnknownModelError, match="did you mean 'cifar_plain20'"):
        create_model("cifar_plain21")


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="did you mean 'resnet50'"):
        create_model("resnt50")
    with pytest.raises(UnknownModelError, match="cifar_resnet110"):
        create_model("cifar_resnet_110")
    # It is a ValueError, so callers validating user input need to catch one type only.
    with pytest.raises(ValueError, match="unknown model 'vgg16'"):
        create_model("vgg16")


def test_valid_depths_describes_each_family() -> None:
    assert "18, 34, 50, 101, 152" in valid_depths("imagenet")
    assert "6n+2" in valid_depths("cifar")


def test_unregistered_6n_plus_2_depth_is_built_on_demand() -> None:
    assert "cifar_resnet26" not in list_models()
    info = get_model_info("cifar_resnet26")
    assert (info.depth, info.shortcut, info.plain) == (26, "A", False)
    model = create_model("cifar_resnet26")
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [4, 4, 4]
    assert len(create_model("cifar_plain8").layer1) == 1


def test_duplicate_registration_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_MODELS", dict(registry_module._MODELS))
    spec = dict(
        family="cifar",
        depth=8,
        block="basic",
        plain=False,
        shortcut="A",
        input_size=32,
        num_classes_default=10,
        builder=lambda **kw: nn.Linear(1, 1),
        options=(),
    )
    info = register_model("test_tiny8", **spec)
    assert isinstance(info, ModelInfo)
    assert "test_tiny8" in list_models("cifar")
    with pytest.raises(ValueError, match="test_tiny8"):
        register_model("test_tiny8", **spec)
    with pytest.raises(ValueError, match="resnet50"):
        register_model("resnet50", **spec)


def test_model_info_refuses_inconsistent_metadata() -> None:
    with pytest.raises(ValueError, match="family"):
        ModelInfo("x", "mnist", 8, "basic", False, "A", 28, 10)
    with pytest.raises(ValueError, match="plain"):
        ModelInfo("x", "cifar", 8, "basic", True, "A", 32, 10)


@pytest.mark.parametrize(
    ("name", "options", "pattern"),
    [
        ("resnet50", {"shortcut": "D"}, "shortcut must be one of 'A', 'B', 'C'"),
        ("cifar_resnet20", {"shortcut": "b"}, "shortcut must be one of 'A', 'B', 'C'"),
        ("plain34", {"shortcut": "B"}, "shortcut"),
        ("cifar_plain20", {"shortcut": "A"}, "shortcut"),
        ("cifar_resnet20", {"stride_in_1x1": False}, "stride_in_1x1"),
        ("resnet18", {"num_clases": 10}, "did you mean 'num_classes'"),
        ("resnet18", {"num_classes": 0}, "num_classes must be a positive integer"),
        ("resnet18", {"in_channels": 2.5}, "in_channels must be a positive integer"),
        ("resnet50", {"stride_in_1x1": "yes"}, "stride_in_1x1 must be one of True, False"),
        ("plain18", {"zero_init_residual": True}, "zero_init_residual"),
    ],
)
def test_invalid_options_name_the_option(name: str, options: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        create_model(name, **options)


def _main_path_layers(model: nn.Module) -> int:
    """Weighted layers a signal crosses: convs outside shortcuts, plus the fc."""
    convs = [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and "downsample" not in name
    ]
    return len(convs) + 1


def _with_cost(name: str) -> object:
    # The 1000-layer nets take most of a minute each on 2 cores: `make test` runs them,
    # `make check` (the fast tier) leaves them out.
    deep = name.endswith(("1001", "1202"))
    return pytest.param(name, marks=pytest.mark.slow) if deep else name


@pytest.mark.parametrize("name", [_with_cost(n) for n in list_models()])
def test_forward_backward_and_depth(name: str) -> None:
    info = get_model_info(name)
    torch.manual_seed(0)
    model = create_model(name)
    # The name's depth is the paper's count of weighted layers on the main path.
    assert _main_path_layers(model) == info.depth
    size = 32 if info.family == "cifar" else 64
    x = torch.randn(2, 3, size, size)
    logits = model(x)
    assert logits.shape == (2, info.num_classes)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert torch.isfinite(model.fc.weight.grad).all()
    if not info.plain:
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # Plain nets are exempt: at initialisation plain-110's conv1 gradient is already ~1e7 and
    # plain-1202's overflows float32, the trouble behind the paper's Fig. 6.
