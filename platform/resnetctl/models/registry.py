"""Model registry: every network of the paper by name, with what it is and how to build it.

Names follow one pattern, ``<series><depth>`` (``resnet50``, ``plain34``, ``cifar_resnet110``), so
a name whose series is known but whose depth is not can be answered with the depths that exist,
and a series whose depths follow a rule (CIFAR's 6n+2) builds any depth it allows on demand.
"""

from __future__ import annotations

import difflib
import inspect
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from torch import nn

Builder = Callable[..., nn.Module]

FAMILIES: tuple[str, ...] = ("imagenet", "cifar")
BLOCKS: tuple[str, ...] = ("basic", "bottleneck")
DEFAULT_SHORTCUTS: tuple[str, ...] = ("A", "B", "C", "none")


class UnknownModelError(ValueError):
    """A model name the registry cannot resolve; the message says which names would work."""


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is, without building it.

    ``shortcut`` is the default shortcut option ("A", "B", "C"), or "none" for plain nets.
    ``num_classes`` and ``input_size`` are the defaults of the dataset the paper trains it on.
    """

    name: str
    family: str
    depth: int
    block: str
    plain: bool
    shortcut: str
    input_size: int
    num_classes: int
    preact: bool = False

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}; got {self.family!r}")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}; got {self.block!r}")
        if self.shortcut not in DEFAULT_SHORTCUTS:
            raise ValueError(f"shortcut must be one of {DEFAULT_SHORTCUTS}; got {self.shortcut!r}")
        if self.plain != (self.shortcut == "none"):
            raise ValueError("plain nets, and only they, have shortcut 'none'")


@dataclass(frozen=True)
class _Entry:
    info: ModelInfo
    builder: Builder
    options: frozenset[str]


@dataclass(frozen=True)
class _Series:
    family: str
    depths: str
    accepts_depth: Callable[[int], bool] | None
    make: Callable[[int], dict[str, Any]] | None


_MODELS: dict[str, _Entry] = {}
_SERIES: dict[str, _Series] = {}
_NAME = re.compile(r"(?P<prefix>[a-z_]+?)(?P<depth>\d+)")
_PREFIXES: dict[tuple[str, bool], str] = {
    ("imagenet", False): "resnet",
    ("imagenet", True): "plain",
    ("cifar", False): "cifar_resnet",
    ("cifar", True): "cifar_plain",
}


def _options_of(builder: Builder) -> frozenset[str]:
    params = inspect.signature(builder).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        raise TypeError("builder takes **kwargs; pass options= to name the options it accepts")
    return frozenset(p.name for p in params if p.default is not inspect.Parameter.empty)


def _make_entry(
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
) -> _Entry:
    info = ModelInfo(
        name=name,
        family=family,
        depth=depth,
        block=block,
        plain=plain,
        shortcut=shortcut,
        input_size=input_size,
        num_classes=num_classes_default,
        preact=preact,
    )
    accepted = frozenset(options) if options is not None else _options_of(builder)
    return _Entry(info, builder, accepted)


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
    """Register ``builder`` under ``name``; a name can be registered once only.

    ``options`` names the keyword options ``create_model`` may pass on; by default, the builder's
    parameters that have defaults. Raises ``ValueError`` if ``name`` is taken.
    """
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    entry = _make_entry(
        name,
        family=family,
        depth=depth,
        block=block,
        plain=plain,
        shortcut=shortcut,
        input_size=input_size,
        num_classes_default=num_classes_default,
        builder=builder,
        options=options,
        preact=preact,
    )
    _MODELS[name] = entry
    return entry.info


def register_series(
    prefix: str,
    *,
    family: str,
    depths: str,
    accepts_depth: Callable[[int], bool] | None = None,
    make: Callable[[int], dict[str, Any]] | None = None,
) -> None:
    """Declare the series ``<prefix><depth>`` so unknown depths get an answer naming valid ones.

    ``depths`` is that answer ("ImageNet ResNets have depths 18, 34, ..."). With ``make``, a depth
    that ``accepts_depth`` allows but nobody registered is built on demand: ``make(depth)`` returns
    the keyword arguments of :func:`register_model`.
    """
    if prefix in _SERIES:
        raise ValueError(f"series {prefix!r} is already registered")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    _SERIES[prefix] = _Series(family, depths, accepts_depth, make)


def _suggest(name: str, candidates: Collection[str]) -> str:
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _unknown_family(family: object) -> ValueError:
    hint = _suggest(family, FAMILIES) if isinstance(family, str) else ""
    return ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}{hint}")


def _prefix(name: str) -> str | None:
    match = _NAME.fullmatch(name)
    return match["prefix"] if match else None


def _resolve(name: str) -> _Entry:
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str; got {type(name).__name__}")
    if name in _MODELS:
        return _MODELS[name]
    match = _NAME.fullmatch(name)
    series = _SERIES.get(match["prefix"]) if match else None
    if match and series:
        depth = int(match["depth"])
        if series.make and series.accepts_depth and series.accepts_depth(depth):
            return _make_entry(**series.make(depth))
        same_series = [e.info for n, e in _MODELS.items() if _prefix(n) == match["prefix"]]
        nearest = min(same_series, key=lambda i: abs(i.depth - depth), default=None)
        hint = f"; did you mean {nearest.name!r}?" if nearest else ""
        raise UnknownModelError(f"unknown model {name!r}: {series.depths}{hint}")
    raise UnknownModelError(
        f"unknown model {name!r}{_suggest(name, _MODELS)} (list_models() shows them all)"
    )


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
        hint = _suggest(unknown[0], entry.options)
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
        raise _unknown_family(family)
    infos = [e.info for e in _MODELS.values() if family in (None, e.info.family)]
    return [i.name for i in sorted(infos, key=lambda i: (i.family, i.depth, i.name))]


def model_name(family: str, depth: int, plain: bool = False) -> str:
    """Registry name of the paper's ``depth``-layer net, e.g. ``("cifar", 56) -> "cifar_resnet56"``.

    Raises :class:`UnknownModelError` naming the valid depths when ``depth`` does not exist.
    """
    if family not in FAMILIES:
        raise _unknown_family(family)
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int; got {depth!r}")
    name = f"{_PREFIXES[family, bool(plain)]}{depth}"
    _resolve(name)
    return name


def valid_depths(family: str) -> str:
    """A sentence naming the depths ``family`` offers (the text unknown-depth errors use)."""
    if family not in FAMILIES:
        raise _unknown_family(family)
    texts = dict.fromkeys(s.depths for s in _SERIES.values() if s.family == family)
    return "; ".join(texts)
