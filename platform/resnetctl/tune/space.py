"""The search space of a sweep: model points from `--depths/--shortcuts/--variants`, and the
spec's `search` section (any field by dotted path: grid, choice, uniform, loguniform).

Everything here is typed data that dumps to JSON, so a sweep can be written to disk and
resumed; Ray Tune's domain objects are only made by `param_space`. A trial's Tune config is
`{"model": <model point>, "params": {dotted.path: value}}` (`TrialConfig`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from resnetctl.models.catalog import depth_rule, is_depth
from resnetctl.spec.errors import SpecError
from resnetctl.spec.search import SearchDomain

SHORTCUTS = ("A", "B", "C")
VARIANTS = ("residual", "plain")
FAMILY_TITLES = {"imagenet": "ImageNet", "cifar": "CIFAR"}
#: Above this many combinations, pre-flight checks each value alone instead of the product.
MAX_CHECKED_COMBINATIONS = 256


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def to_tune(domain: SearchDomain) -> Any:
    """The Ray Tune domain (or grid) of a `search` entry."""
    from ray import tune

    makers = {
        "grid": lambda values: tune.grid_search(list(values)),
        "choice": lambda values: tune.choice(list(values)),
        "uniform": lambda values: tune.uniform(*values),
        "loguniform": lambda values: tune.loguniform(*values),
    }
    return makers[domain.kind](domain.values)


def describe_domain(domain: SearchDomain) -> str:
    """`grid [18, 34]`, `loguniform [0.01, 0.3]`: for tables and MLflow params."""
    return f"{domain.kind} {list(domain.values)}"


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


def resolve_family(depths: Sequence[int], family: str) -> tuple[str, str | None]:
    """The family the depths are swept in, and a note when it is not the base spec's.

    Depths are read in the base spec's family. When some are not depths of that family but all
    are depths of the other one (the paper's ImageNet depths 18, 34, 50 against a CIFAR base,
    whose nets are 6n+2 layers deep), the sweep uses the other family: its nets run on the base
    spec's input, e.g. ImageNet ResNets on 32x32 digits. A list that fits neither family whole
    is an error, so one sweep never compares nets of two families.
    """
    other = "cifar" if family == "imagenet" else "imagenet"
    both_rules = f"{depth_rule('cifar')}; {depth_rule('imagenet')}"
    wrong = [d for d in depths if not is_depth(family, d)]
    if not wrong:
        return family, None
    neither = [d for d in wrong if not is_depth(other, d)]
    if neither:
        listed = ", ".join(map(str, neither))
        raise SpecError.single("--depths", f"no network has depth {listed}: {both_rules}")
    if all(is_depth(other, d) for d in depths):
        listed = ", ".join(map(str, wrong))
        return other, (
            f"depth {listed} {'is' if len(wrong) == 1 else 'are'} not "
            f"{FAMILY_TITLES[family]} depths ({depth_rule(family)}); sweeping the "
            f"{FAMILY_TITLES[other]} family on the base spec's input instead"
        )
    only = [d for d in depths if not is_depth(other, d)]
    raise SpecError.single(
        "--depths",
        f"depth {', '.join(map(str, wrong))} exist only as {FAMILY_TITLES[other]} nets and "
        f"{', '.join(map(str, only))} only as {FAMILY_TITLES[family]} nets; one sweep compares "
        f"nets of one family ({both_rules})",
    )


class ModelPoint(_Strict):
    """One network of the model grid: what `model.*` becomes in a trial."""

    family: str
    depth: int
    variant: str
    shortcut: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _without_label(cls, data: Any) -> Any:
        # Tune's config carries the label beside the fields (`as_config`): derived, not read.
        if isinstance(data, dict) and "label" in data:
            return {k: v for k, v in data.items() if k != "label"}
        return data

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

    def as_config(self) -> dict[str, Any]:
        """The grid value in Tune's config: the fields and the label (what Tune shows)."""
        return {**self.model_dump(), "label": self.label}


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
        shortcut = None if variant == "plain" else shortcut
        points[ModelPoint(family=family, depth=depth, variant=variant, shortcut=shortcut)] = None
    return list(points), note


def _plain(value: Any) -> Any:
    """numpy scalars (Tune samples floats with numpy) as Python values, so they dump as JSON."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, list | dict) else value


class TrialConfig(_Strict):
    """A trial's Tune config: its network (when the sweep compares networks) and the values
    of the searched fields."""

    model: ModelPoint | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params", mode="before")
    @classmethod
    def _python_values(cls, params: Any) -> Any:
        return {k: _plain(v) for k, v in params.items()} if isinstance(params, dict) else params

    def assignments(self) -> dict[str, Any]:
        """The trial as spec assignments (dotted path -> value)."""
        return {**(self.model.assignments() if self.model else {}), **self.params}


class SearchSpace(_Strict):
    """Model points and searched fields; `empty` when there is nothing to compare."""

    models: list[ModelPoint] = Field(default_factory=list)
    domains: dict[str, SearchDomain] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """True when no flag and no `search` entry defines a choice."""
        return not self.models and not self.domains

    def param_space(self) -> dict[str, Any]:
        """Tune's `param_space`: `{"model": grid of points, "params": {path: domain}}`."""
        from ray import tune

        space: dict[str, Any] = {}
        if self.models:
            space["model"] = tune.grid_search([p.as_config() for p in self.models])
        if self.domains:
            space["params"] = {path: to_tune(d) for path, d in self.domains.items()}
        return space

    def size(self, samples: int) -> int:
        """Number of trials Tune will create."""
        grid = len(self.models) or 1
        for domain in self.domains.values():
            if domain.kind == "grid":
                grid *= len(domain.values)
        return grid * samples

    def labels_unique(self) -> bool:
        """Whether the grid points have distinct labels: each axis's texts differ (two grid
        values may print alike at 4 significant digits). Random domains draw anew per trial."""
        axes = [[p.label for p in self.models]]
        axes += [
            [describe_value(v) for v in d.values] for d in self.domains.values() if d.kind == "grid"
        ]
        return all(len(set(axis)) == len(axis) for axis in axes)

    def first_config(self) -> TrialConfig:
        """A trial of the space: the first model point and every field's first value."""
        return TrialConfig(
            model=self.models[0] if self.models else None,
            params={path: d.values[0] for path, d in self.domains.items()},
        )

    def check_points(self) -> Iterator[dict[str, Any]]:
        """Assignments to validate before any trial starts: the product of every model point and
        every value or bound, or (when that is too large) each value alone with the others at
        their first value."""
        axes: list[list[dict[str, Any]]] = []
        if self.models:
            axes.append([p.assignments() for p in self.models])
        for path, domain in self.domains.items():
            axes.append([{path: value} for value in domain.values])
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


def describe_value(value: Any) -> str:
    """Short text of a searched value for tables (floats to 4 significant digits)."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict | list):
        return yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return str(value)
