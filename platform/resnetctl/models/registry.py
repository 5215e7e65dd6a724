"""Model registry: a builder for every network the catalog lists, and `create_model` to call it.

What each name is (family, depth, block, default shortcut) lives in the torch-free
`catalog.py`; this module adds how to build it and which keyword options the builder takes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from torch import nn

from resnetctl.models.catalog import (
    FAMILIES,
    ModelInfo,
    UnknownModelError,
    add_model,
    model_info,
    model_name,
    series_prefix,
    suggest,
    unknown_family,
    valid_depths,
)

__all__ = [
    "FAMILIES",
    "ModelInfo",
    "UnknownModelError",
    "attach_builder",
    "attach_series",
    "create_model",
    "get_model_info",
    "list_models",
    "model_name",
    "register_model",
    "valid_depths",
]

Builder = Callable[..., nn.Module]
# depth -> the builder of the series' net of that depth and the options it takes.
SeriesBuilder = Callable[[int], tuple[Builder, Collection[str] | None]]


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    builder: Builder
    options: frozenset[str]


_MODELS: dict[str, _Entry] = {}
_SERIES_BUILDERS: dict[str, SeriesBuilder] = {}


def _options_of(builder: Builder) -> frozenset[str]:
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise TypeError("builder takes **kwargs; pass options= to name the options it accepts")
    return frozenset(p.name for p in params if p.default is not inspect.Parameter.empty)


def _make_entry(info: ModelInfo, builder: Builder, options: Collection[str] | None) -> _Entry:
    accepted = frozenset(options) if options is not None else _options_of(builder)
    return _Entry(info, builder, accepted)


def attach_builder(
    name: str, builder: Builder, options: Collection[str] | None = None
) -> ModelInfo:
    """Make the catalog's model ``name`` buildable by ``builder``; once per name.

    ``options`` names the keyword options ``create_model`` may pass on; by default, the builder's
    parameters that have defaults. Raises ``ValueError`` if ``name`` already has a builder.
    """
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    entry = _make_entry(model_info(name), builder, options)
    _MODELS[name] = entry
    return entry.info


def attach_series(prefix: str, build: SeriesBuilder) -> None:
    """Build the catalog series ``<prefix><depth>`` at any depth its rule allows."""
    if prefix in _SERIES_BUILDERS:
        raise ValueError(f"series {prefix!r} is already registered")
    _SERIES_BUILDERS[prefix] = build


def register_model(
    name: str,
    *,
    family: str,
    depth: int,
    block: str,
    plain: bool,
    shortcut: str,
    input_size: int,
    num_classes_default: int,
    builder: Builder,
    options: Collection[str] | None = None,
    preact: bool = False,
) -> ModelInfo:
    """Add a network the catalog does not list: its facts, and ``builder`` to build it.

    ``options`` as for :func:`attach_builder`. Raises ``ValueError`` if ``name`` is taken.
    """
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    facts = (family, depth, block, plain, shortcut, input_size, num_classes_default, preact)
    add_model(ModelInfo(name, *facts))
    return attach_builder(name, builder, options)


def _attach_the_paper() -> None:
    # The builder modules attach themselves on import; importing them here makes the registry
    # whole whichever module a caller imported first.
    # import-circle: the paper's builder modules import this one to attach themselves to it
    from resnetctl.models import cifar, imagenet  # noqa: F401


def _resolve(name: str) -> _Entry:
    _attach_the_paper()
    if isinstance(name, str) and name in _MODELS:
        return _MODELS[name]
    info = model_info(name)
    build = _SERIES_BUILDERS.get(series_prefix(info.name) or "")
    if build is None:  # listed in the catalog, but no module attached a builder
        raise UnknownModelError(f"model {name!r} has no builder")
    return _make_entry(info, *build(info.depth))


def create_model(name: str, **options: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword ``options``.

    Raises :class:`UnknownModelError` for unknown names, ``ValueError`` for options the model does
    not take or values it does not allow.

    >>> model = create_model("cifar_resnet20", num_classes=100)
    >>> model.fc.out_features
    100
    """
    entry = _resolve(name)
    unknown = sorted(set(options) - entry.options)
    if unknown:
        allowed = ", ".join(sorted(entry.options))
        hint = suggest(unknown[0], entry.options)
        if entry.info.plain and "shortcut" in unknown:
            hint += "; plain nets have no shortcuts"
        raise ValueError(
            f"{entry.info.name} does not take option(s) {', '.join(unknown)}{hint} "
            f"(allowed: {allowed})"
        )
    return entry.builder(**options)


def get_model_info(name: str) -> ModelInfo:
    """What ``name`` is (family, depth, block, default shortcut, ...) without building it."""
    return _resolve(name).info


def list_models(family: str | None = None) -> list[str]:
    """Registered names, by family, then depth, then name; ``family`` keeps one family only."""
    if family is not None and family not in FAMILIES:
        raise unknown_family(family)
    _attach_the_paper()
    infos = [e.info for e in _MODELS.values() if family in (None, e.info.family)]
    return [i.name for i in sorted(infos, key=lambda i: (i.family, i.depth, i.name))]
