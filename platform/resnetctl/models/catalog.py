"""What each network of the paper is, without torch: names, families, depths, blocks, defaults.

The job spec validates `model:` against these facts, and `resnetctl validate` must not pay for
importing torch to do it; the registry (`registry.py`) attaches a builder to each name listed
here, so the depths a spec accepts and the nets the registry builds come from one table.

Names follow one pattern, ``<series><depth>`` (``resnet50``, ``plain34``, ``cifar_resnet110``), so
a name whose series is known but whose depth is not can be answered with the depths that exist,
and a series whose depths follow a rule (CIFAR's 6n+2) answers any depth it allows.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass

FAMILIES: tuple[str, ...] = ("imagenet", "cifar")
BLOCKS: tuple[str, ...] = ("basic", "bottleneck")
DEFAULT_SHORTCUTS: tuple[str, ...] = ("A", "B", "C", "none")

#: The ImageNet nets of Table 1: depth -> (block kind, blocks per stage).
IMAGENET_STAGES: dict[int, tuple[str, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
#: The depths of the paper's Table 6.
CIFAR_DEPTHS: tuple[int, ...] = (20, 32, 44, 56, 110, 1202)
#: The pre-activation nets of "Identity Mappings": depth -> uses bottleneck blocks.
PREACT_DEPTHS: dict[int, bool] = {110: False, 164: True, 1001: True}

IMAGENET_DEPTH_RULE = "ImageNet ResNets have depths " + ", ".join(str(d) for d in IMAGENET_STAGES)
CIFAR_DEPTH_RULE = (
    "CIFAR nets have depth 6n+2 (n >= 1): 8, 14, 20, 26, 32, ..., e.g. the paper's "
    + ", ".join(str(d) for d in CIFAR_DEPTHS)
)
PREACT_DEPTH_RULE = (
    "CIFAR pre-activation ResNets are registered at depths 110 (basic blocks), 164 and 1001 "
    "(bottlenecks); cifar_preact_resnet(depth, bottleneck=...) builds others"
)

#: Series prefix of each (family, plain) pair: ``("cifar", False) -> "cifar_resnet"``.
PREFIXES: dict[tuple[str, bool], str] = {
    ("imagenet", False): "resnet",
    ("imagenet", True): "plain",
    ("cifar", False): "cifar_resnet",
    ("cifar", True): "cifar_plain",
}


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
class _Series:
    family: str
    depths: str
    # The info of a depth nobody listed but the series' rule allows, else None.
    info_at: Callable[[int], ModelInfo | None] | None


_INFOS: dict[str, ModelInfo] = {}
_SERIES: dict[str, _Series] = {}
_NAME = re.compile(r"(?P<prefix>[a-z_]+?)(?P<depth>\d+)")


def is_cifar_depth(depth: int) -> bool:
    """Whether ``depth`` is 6n+2 for some n >= 1: a stem, 3 stages of n two-layer blocks, an fc."""
    if isinstance(depth, bool) or not isinstance(depth, int):
        return False
    return depth >= 8 and (depth - 2) % 6 == 0


def imagenet_info(depth: int, *, plain: bool) -> ModelInfo:
    """The Table 1 net (or its plain twin) of ``depth``, one of `IMAGENET_STAGES`."""
    return ModelInfo(
        name=f"{PREFIXES['imagenet', plain]}{depth}",
        family="imagenet",
        depth=depth,
        block=IMAGENET_STAGES[depth][0],
        plain=plain,
        shortcut="none" if plain else "B",
        input_size=224,
        num_classes=1000,
    )


def cifar_info(depth: int, *, plain: bool) -> ModelInfo:
    """The section 4.2 CIFAR net (or its plain twin) of any depth 6n+2."""
    return ModelInfo(
        name=f"{PREFIXES['cifar', plain]}{depth}",
        family="cifar",
        depth=depth,
        block="basic",
        plain=plain,
        shortcut="none" if plain else "A",
        input_size=32,
        num_classes=10,
    )


def preact_info(depth: int) -> ModelInfo:
    """The pre-activation CIFAR net of ``depth``, one of `PREACT_DEPTHS`."""
    return ModelInfo(
        name=f"cifar_preact_resnet{depth}",
        family="cifar",
        depth=depth,
        block="bottleneck" if PREACT_DEPTHS[depth] else "basic",
        plain=False,
        shortcut="B",
        input_size=32,
        num_classes=10,
        preact=True,
    )


def add_model(info: ModelInfo) -> None:
    """List ``info`` under its name; a name can be listed once only."""
    if info.name in _INFOS:
        raise ValueError(f"model {info.name!r} is already registered")
    _INFOS[info.name] = info


def add_series(
    prefix: str,
    *,
    family: str,
    depths: str,
    info_at: Callable[[int], ModelInfo | None] | None = None,
) -> None:
    """Declare the series ``<prefix><depth>``: ``depths`` is the sentence naming valid depths;
    ``info_at(depth)`` describes a depth nobody listed that the series allows (else None)."""
    if prefix in _SERIES:
        raise ValueError(f"series {prefix!r} is already registered")
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}; got {family!r}")
    _SERIES[prefix] = _Series(family, depths, info_at)


def suggest(name: str, candidates: Collection[str]) -> str:
    """``; did you mean 'x'?`` for the candidates close to ``name``, else an empty string."""
    close = difflib.get_close_matches(name.lower(), list(candidates), n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def unknown_family(family: object) -> ValueError:
    """The error for a family that does not exist, with the nearest one."""
    hint = suggest(family, FAMILIES) if isinstance(family, str) else ""
    return ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}{hint}")


def series_prefix(name: str) -> str | None:
    """The ``<series>`` part of ``<series><depth>``, or None for a name of another form."""
    match = _NAME.fullmatch(name)
    return match["prefix"] if match else None


def model_info(name: str) -> ModelInfo:
    """What ``name`` is; raises :class:`UnknownModelError` naming the names that would work."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a str; got {type(name).__name__}")
    if name in _INFOS:
        return _INFOS[name]
    match = _NAME.fullmatch(name)
    series = _SERIES.get(match["prefix"]) if match else None
    if match and series:
        depth = int(match["depth"])
        info = series.info_at(depth) if series.info_at else None
        if info is not None:
            return info
        same_series = [i for n, i in _INFOS.items() if series_prefix(n) == match["prefix"]]
        nearest = min(same_series, key=lambda i: abs(i.depth - depth), default=None)
        hint = f"; did you mean {nearest.name!r}?" if nearest else ""
        raise UnknownModelError(f"unknown model {name!r}: {series.depths}{hint}")
    raise UnknownModelError(
        f"unknown model {name!r}{suggest(name, _INFOS)} (list_models() shows them all)"
    )


def model_name(family: str, depth: int, plain: bool = False) -> str:
    """Registry name of the paper's ``depth``-layer net, e.g. ``("cifar", 56) -> "cifar_resnet56"``.

    Raises :class:`UnknownModelError` naming the valid depths when ``depth`` does not exist.
    """
    if family not in FAMILIES:
        raise unknown_family(family)
    if isinstance(depth, bool) or not isinstance(depth, int):
        raise TypeError(f"depth must be an int; got {depth!r}")
    name = f"{PREFIXES[family, bool(plain)]}{depth}"
    model_info(name)
    return name


def valid_depths(family: str) -> str:
    """A sentence naming the depths ``family`` offers (the text unknown-depth errors use)."""
    if family not in FAMILIES:
        raise unknown_family(family)
    texts = dict.fromkeys(s.depths for s in _SERIES.values() if s.family == family)
    return "; ".join(texts)


def depth_rule(family: str) -> str:
    """The sentence saying which depths the paper's nets of ``family`` have (residual and plain
    twins alike), e.g. for an error about a depth that does not exist."""
    if family not in FAMILIES:
        raise unknown_family(family)
    return _SERIES[PREFIXES[family, False]].depths


def is_depth(family: str, depth: int, *, plain: bool = False) -> bool:
    """Whether ``family`` has a ``depth``-layer net (``model_name`` would answer)."""
    try:
        model_name(family, depth, plain)
    except (UnknownModelError, TypeError):
        return False
    return True


def _cifar_info_at(depth: int, *, plain: bool) -> ModelInfo | None:
    return cifar_info(depth, plain=plain) if is_cifar_depth(depth) else None


def _list_the_paper() -> None:
    for plain in (False, True):
        add_series(PREFIXES["imagenet", plain], family="imagenet", depths=IMAGENET_DEPTH_RULE)
    for plain in (False, True):
        for depth in IMAGENET_STAGES:
            add_model(imagenet_info(depth, plain=plain))
    for plain in (False, True):
        add_series(
            PREFIXES["cifar", plain],
            family="cifar",
            depths=CIFAR_DEPTH_RULE,
            info_at=lambda depth, plain=plain: _cifar_info_at(depth, plain=plain),
        )
        for depth in CIFAR_DEPTHS:
            add_model(cifar_info(depth, plain=plain))
    add_series("cifar_preact_resnet", family="cifar", depths=PREACT_DEPTH_RULE)
    for depth in PREACT_DEPTHS:
        add_model(preact_info(depth))


_list_the_paper()
