"""The `search` section of a tune file: spec fields by dotted path, each with the values a sweep
tries (`grid`, `choice`) or the range it draws from (`uniform`, `loguniform`).

    search:
      train.base_lr: {loguniform: [0.01, 0.3]}
      train.optimizer.weight_decay: {choice: [0.0001, 0.0005]}
      model.depth: {grid: [20, 56]}

`resnetctl submit` trains the spec without it; `resnetctl tune` runs one trial per point.
Whether a path names a field, and whether each value suits it, is checked when the sweep is
planned (`resnetctl.tune.plan`), on the spec of every trial.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag, model_validator

from resnetctl.spec.base import StrictModel

DOMAIN_KINDS = ("grid", "choice", "uniform", "loguniform")


class _Domain(StrictModel):
    """A domain is a mapping of one key, its kind, to a list: `{grid: [18, 34]}`."""

    #: The key that selects the domain (pydantic puts it in error locations, as a `kind`).
    kind: ClassVar[str]

    @property
    def values(self) -> tuple[Any, ...]:
        """The listed values, or the bounds [low, high]."""
        return tuple(getattr(self, self.kind))


class GridDomain(_Domain):
    """Every value, one trial each (multiplied with the other grids and model points)."""

    kind: ClassVar[str] = "grid"
    grid: list[Any] = Field(min_length=1, description="Values, each tried.")


class ChoiceDomain(_Domain):
    """One of the values, drawn at random for each trial (`--samples` trials per grid point)."""

    kind: ClassVar[str] = "choice"
    choice: list[Any] = Field(min_length=1, description="Values, one drawn per trial.")


_Bounds = Annotated[
    list[Annotated[float, Field(allow_inf_nan=False)]], Field(min_length=2, max_length=2)
]


class _Range(_Domain):
    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        low, high = self.values
        if not low < high:
            raise ValueError(f"{self.kind} bounds {list(self.values)} need low < high")
        if self.kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform bounds {list(self.values)} must be > 0")
        return self


class UniformDomain(_Range):
    """A number drawn uniformly from [low, high] for each trial."""

    kind: ClassVar[str] = "uniform"
    uniform: _Bounds = Field(description="[low, high].")


class LogUniformDomain(_Range):
    """A number drawn uniformly in log space from [low, high] (both > 0), for rates."""

    kind: ClassVar[str] = "loguniform"
    loguniform: _Bounds = Field(description="[low, high], both > 0.")


def _domain_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return next(iter(value), None)
    return getattr(value, "kind", None)


def _one_known_kind(value: Any) -> Any:
    """Name the problem before the union does: pydantic's union errors list every member."""
    if isinstance(value, StrictModel):
        return value
    if not isinstance(value, dict) or len(value) != 1:
        expected = ", ".join(f"{{{k}: [...]}}" for k in DOMAIN_KINDS)
        # The loader adds a scalar input to the message itself.
        got = f", got {value!r}" if isinstance(value, dict | list) else ""
        raise ValueError(f"expected one of {expected}{got}")
    (kind,) = value
    if kind not in DOMAIN_KINDS:
        raise ValueError(f"unknown search kind {kind!r}; use one of {', '.join(DOMAIN_KINDS)}")
    return value


SearchDomain = Annotated[
    Annotated[GridDomain, Tag("grid")]
    | Annotated[ChoiceDomain, Tag("choice")]
    | Annotated[UniformDomain, Tag("uniform")]
    | Annotated[LogUniformDomain, Tag("loguniform")],
    Discriminator(_domain_kind),
    BeforeValidator(_one_known_kind),
]


def _dotted(path: str) -> str:
    if not path or any(not part for part in path.split(".")):
        # No example path here: the loader points an error at the first field its message names.
        raise ValueError(f"{path!r} is not a dotted field path")
    return path


DottedPath = Annotated[str, AfterValidator(_dotted)]
SearchSection = dict[DottedPath, SearchDomain]
