"""The search space of a sweep: model points from `--depths/--shortcuts/--variants`, and the
spec's `search` section (any field by dotted path: grid, choice, uniform, loguniform).

Everything here is plain data (JSON-ready), so a sweep can be written to disk and resumed; Ray
Tune's domain objects are only made by `param_space`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from resnetctl.spec.errors import SpecError, SpecIssue

DOMAIN_KINDS = ("grid", "choice", "uniform", "loguniform")
SHORTCUTS = ("A", "B", "C")
VARIANTS = ("residual", "plain")
FAMILY_TITLES = {"imagenet": "ImageNet", "cifar": "CIFAR"}
#: Above this many combinations, pre-flight checks each value alone instead of the product.
MAX_CHECKED_COMBINATIONS = 256


@dataclass(frozen=True)
class Domain:
    """One searched field: `grid` and `choice` list values, `uniform`/`loguniform` give bounds."""

    kind: str
    values: tuple[Any, ...]

    def to_tune(self) -> Any:
        """The Ray Tune domain (or grid) for this field."""
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        low, high = self.values
        return tune.uniform(low, high) if self.kind == "uniform" else tune.loguniform(low, high)

    def edge_values(self) -> list[Any]:
        """Values that bound what trials may draw: every listed value, or both bounds."""
        return list(self.values)

    def describe(self) -> str:
        """`grid [18, 34]`, `loguniform [0.01, 0.3]`: for tables and MLflow params."""
        return f"{self.kind} {list(self.values)}"


def parse_domain(path: str, raw: Any, where: str) -> Domain:
    """Read `{grid: [...]}`, `{choice: [...]}`, `{uniform: [lo, hi]}` or
    `{loguniform: [lo, hi]}`; raise `SpecError` naming `where` otherwise."""
    field_name = f"search.{path}"
    if not isinstance(raw, Mapping) or len(raw) != 1:
        raise SpecError.single(
            where,
            f"expected one of {{{', '.join(f'{k}: [...]' for k in DOMAIN_KINDS)}}}, got {raw!r}",
            field_name,
        )
    ((kind, values),) = raw.items()
    if kind not in DOMAIN_KINDS:
        raise SpecError.single(
            where, f"unknown search kind {kind!r}; use one of {', '.join(DOMAIN_KINDS)}", field_name
        )
    if not isinstance(values, list) or not values:
        raise SpecError.single(where, f"{kind} needs a non-empty list, got {values!r}", field_name)
    if kind in ("uniform", "loguniform"):
        if len(values) != 2 or not all(_is_number(v) for v in values):
            raise SpecError.single(
                where, f"{kind} needs two numbers [low, high], got {values!r}", field_name
            )
        low, high = (float(v) for v in values)
        if not low < high:
            raise SpecError.single(where, f"{kind} bounds {values} need low < high", field_name)
        if kind == "loguniform" and low <= 0:
            raise SpecError.single(where, f"loguniform bounds {values} must be > 0", field_name)
        return Domain(kind, (low, high))
    return Domain(kind, tuple(values))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def parse_search_section(
    raw: Any, where: str, lines: Mapping[str, str] | None = None
) -> dict[str, Domain]:
    """The YAML `search` section: a mapping of dotted spec paths to domains. `where` locates the
    section, `lines` each of its keys (`file:line`), for error messages."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError.single(where, "search must map dotted.field paths to domains", "search")
    domains: dict[str, Domain] = {}
    issues: list[SpecIssue] = []
    for path, spec in raw.items():
        at = (lines or {}).get(str(path), where)
        if not isinstance(path, str) or not path or any(not p for p in path.split(".")):
            issues.append(SpecIssue(at, "search", f"{path!r} is not a dotted.field path"))
            continue
        try:
            domains[path] = parse_domain(path, spec, at)
        except SpecError as exc:
            issues.extend(exc.issues)
    if issues:
        raise SpecError(issues)
    return domains


def parse_list(text: str | None, option: str) -> list[str] | None:
    """`"18, 34,50"` -> `["18", "34", "50"]`; None when the option was not given."""
    if text is None:
        return None
    items = [item.strip() for item in text.split(",")]
    if not any(items):
        raise SpecError.single(option, "the list is empty")
    if not all(items):
        raise SpecError.single(option, f"empty item in {text!r}")
    return list(dict.fromkeys(items))  # repeated values would only rerun the same trial


def parse_depths(text: str | None) -> list[int] | None:
    """`--depths 18,34,50` as integers."""
    items = parse_list(text, "--depths")
    if items is None:
        return None
    bad = [item for item in items if not item.isdigit() or int(item) < 1]
    if bad:
        raise SpecError.single(
            "--depths", f"not a depth: {', '.join(bad)} (expected e.g. 18,34,50)"
        )
    return [int(item) for item in items]


def parse_choices(text: str | None, option: str, allowed: Sequence[str]) -> list[str] | None:
    """`--shortcuts A,b` -> `["A", "B"]`; unknown names are an error listing the allowed ones."""
    items = parse_list(text, option)
    if items is None:
        return None
    lookup = {a.lower(): a for a in allowed}
    unknown = [item for item in items if item.lower() not in lookup]
    if unknown:
        raise SpecError.single(
            option, f"unknown value {', '.join(map(repr, unknown))}; use {', '.join(allowed)}"
        )
    return list(dict.fromkeys(lookup[item.lower()] for item in items))


def _is_depth(family: str, depth: int) -> bool:
    from resnetctl.models import UnknownModelError, model_name

    try:
        model_name(family, depth)
    except UnknownModelError:
        return False
    return True


# The depth rules in one line each (the registry's own sentences are longer).
DEPTH_RULES = {
    "cifar": "CIFAR nets are 6n+2 deep: 8, 14, 20, 26, 32, 44, 56, 110, ...",
    "imagenet": "ImageNet ResNets are 18, 34, 50, 101 or 152 deep",
}


def resolve_family(depths: Sequence[int], family: str) -> tuple[str, str | None]:
    """The family the depths are swept in, and a note when it is not the base spec's.

    Depths are read in the base spec's family. When some are not depths of that family but all
    are depths of the other one (the paper's ImageNet depths 18, 34, 50 against a CIFAR base,
    whose nets are 6n+2 layers deep), the sweep uses the other family: its nets run on the base
    spec's input, e.g. ImageNet ResNets on 32x32 digits. A list that fits neither family whole
    is an error, so one sweep never compares nets of two families.
    """
    other = "cifar" if family == "imagenet" else "imagenet"
    wrong = [d for d in depths if not _is_depth(family, d)]
    if not wrong:
        return family, None
    neither = [d for d in wrong if not _is_depth(other, d)]
    if neither:
        listed = ", ".join(map(str, neither))
        raise SpecError.single(
            "--depths",
            f"no network has depth {listed}: {DEPTH_RULES['cifar']}; {DEPTH_RULES['imagenet']}",
        )
    if all(_is_depth(other, d) for d in depths):
        listed = ", ".join(map(str, wrong))
        return other, (
            f"depth {listed} {'is' if len(wrong) == 1 else 'are'} not "
            f"{FAMILY_TITLES[family]} depths ({DEPTH_RULES[family]}); sweeping the "
            f"{FAMILY_TITLES[other]} family on the base spec's input instead"
        )
    only = [d for d in depths if not _is_depth(other, d)]
    raise SpecError.single(
        "--depths",
        f"depth {', '.join(map(str, wrong))} exist only as {FAMILY_TITLES[other]} nets and "
        f"{', '.join(map(str, only))} only as {FAMILY_TITLES[family]} nets; one sweep compares "
        f"nets of one family ({DEPTH_RULES['cifar']}; {DEPTH_RULES['imagenet']})",
    )


@dataclass(frozen=True)
class ModelPoint:
    """One network of the model grid: what `model.*` becomes in a trial."""

    family: str
    depth: int
    variant: str
    shortcut: str | None

    @property
    def label(self) -> str:
        """`resnet18-B`, `plain34`, `cifar_resnet20-A`: short, for tables and plot legends."""
        prefix = "cifar_" if self.family == "cifar" else ""
        kind = "plain" if self.variant == "plain" else "resnet"
        suffix = f"-{self.shortcut}" if self.shortcut else ""
        return f"{prefix}{kind}{self.depth}{suffix}"

    def assignments(self) -> dict[str, Any]:
        """Spec fields set by this point (the registry name is re-derived from them)."""
        return {
            "model.name": None,
            "model.family": self.family,
            "model.depth": self.depth,
            "model.variant": self.variant,
            "model.shortcut": self.shortcut,
        }

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form, used as the grid value in Tune's config."""
        return {
            "family": self.family,
            "depth": self.depth,
            "variant": self.variant,
            "shortcut": self.shortcut,
            "label": self.label,
        }


def model_points(
    base_model: Mapping[str, Any],
    depths: Sequence[int] | None,
    shortcuts: Sequence[str] | None,
    variants: Sequence[str] | None,
) -> tuple[list[ModelPoint], str | None]:
    """The grid of networks from the CLI flags, and a note when the family had to change.

    `base_model` holds the base spec's resolved family, depth and variant, and the shortcut its
    YAML gave (None: the family default). Plain nets have no shortcut, so a plain variant
    appears once however many shortcuts are listed.
    """
    family = str(base_model.get("family") or "imagenet")
    note = None
    if depths is not None:
        family, note = resolve_family(depths, family)
    points: dict[ModelPoint, None] = {}
    for depth, variant, shortcut in itertools.product(
        depths or [int(base_model["depth"])],
        variants or [str(base_model.get("variant") or "residual")],
        shortcuts or [base_model.get("shortcut")],
    ):
        # None leaves the family's default shortcut to the spec (A for CIFAR, B for ImageNet).
        points[ModelPoint(family, depth, variant, None if variant == "plain" else shortcut)] = None
    return list(points), note


@dataclass
class SearchSpace:
    """Model points and searched fields; `empty` when there is nothing to compare."""

    models: list[ModelPoint] = field(default_factory=list)
    domains: dict[str, Domain] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no flag and no `search` entry defines a choice."""
        return not self.models and not self.domains

    def param_space(self) -> dict[str, Any]:
        """Tune's `param_space`: `{"model": grid of points, "params": {path: domain}}`."""
        from ray import tune

        space: dict[str, Any] = {}
        if self.models:
            space["model"] = tune.grid_search([p.as_dict() for p in self.models])
        if self.domains:
            space["params"] = {path: d.to_tune() for path, d in self.domains.items()}
        return space

    def size(self, samples: int) -> int:
        """Number of trials Tune will create."""
        grid = len(self.models) or 1
        for domain in self.domains.values():
            if domain.kind == "grid":
                grid *= len(domain.values)
        return grid * samples

    def check_points(self) -> Iterator[dict[str, Any]]:
        """Assignments to validate before any trial starts: the product of every model point and
        every value or bound, or (when that is too large) each value alone with the others at
        their first value."""
        axes: list[list[dict[str, Any]]] = []
        if self.models:
            axes.append([p.assignments() for p in self.models])
        for path, domain in self.domains.items():
            axes.append([{path: value} for value in domain.edge_values()])
        if not axes:
            yield {}
            return
        total = math.prod(len(axis) for axis in axes)
        if total <= MAX_CHECKED_COMBINATIONS:
            for combo in itertools.product(*axes):
                yield {k: v for part in combo for k, v in part.items()}
            return
        firsts = [axis[0] for axis in axes]
        for index, axis in enumerate(axes):
            for value in axis:
                parts = [*firsts[:index], value, *firsts[index + 1 :]]
                yield {k: v for part in parts for k, v in part.items()}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for the sweep record."""
        return {
            "models": [{k: v for k, v in p.as_dict().items() if k != "label"} for p in self.models],
            "domains": {path: {d.kind: list(d.values)} for path, d in self.domains.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Inverse of `as_dict`."""
        return cls(
            models=[ModelPoint(**m) for m in data.get("models", [])],
            domains={
                path: Domain(kind, tuple(values))
                for path, raw in data.get("domains", {}).items()
                for kind, values in raw.items()
            },
        )


def trial_assignments(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's Tune config as spec assignments (dotted path -> value)."""
    assignments: dict[str, Any] = {}
    point = config.get("model")
    if point:
        assignments.update(
            ModelPoint(**{k: v for k, v in point.items() if k != "label"}).assignments()
        )
    for path, value in (config.get("params") or {}).items():
        assignments[path] = _plain(value)
    return assignments


def _plain(value: Any) -> Any:
    """numpy scalars (Tune samples floats with numpy) as Python values, so YAML can dump them."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, list | dict) else value


def assign(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `data[a][b][c] = value` for `a.b.c`, creating sections that are missing."""
    parts = path.split(".")
    target: Any = data
    for depth, part in enumerate(parts[:-1]):
        key: Any = int(part) if isinstance(target, list) and part.isdigit() else part
        nxt = target[key] if isinstance(target, list) else target.get(key)
        if nxt is None:
            nxt = target[key] = {}
        if not isinstance(nxt, dict | list):
            raise SpecError.single(
                f"search {path}", f"{'.'.join(parts[: depth + 1])} is a value, not a section"
            )
        target = nxt
    last: Any = parts[-1]
    if isinstance(target, list):
        if not last.isdigit() or int(last) >= len(target):
            raise SpecError.single(f"search {path}", f"index {last} is outside the list")
        last = int(last)
    target[last] = value


def describe_value(value: Any) -> str:
    """Short text of a searched value for tables (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)
