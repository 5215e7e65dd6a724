"""`model`: which network of the paper to train."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from resnetctl.models.catalog import ModelInfo, model_info, model_name
from resnetctl.spec.base import StrictModel

#: Parts of a ResNet that `model.init.freeze` can freeze: the stem (first conv and its BN) and
#: the stages, named as the network's modules are.
FREEZABLE = ("stem", "layer1", "layer2", "layer3", "layer4")
#: The MLflow model URIs that `eval`, `export` and `predict` take and fine-tuning refuses.
MLFLOW_SCHEMES = ("models:", "runs:")


class ModelInit(StrictModel):
    """Start from trained weights (fine-tuning) instead of He initialisation.

    The weights are loaded on every worker before DDP wraps the model. A resumed run loads its
    checkpoint afterwards, so only the freezing matters then.
    """

    source: str = Field(
        min_length=1,
        description="A run name under the storage root, a run or checkpoint directory, or "
        "(kind torchvision) a state-dict file saved by `torch.save(model.state_dict())`. No "
        "download happens at run time: the file must be on every worker's disk. Not an "
        "MLflow model URI (`models:/`, `runs:/`): fine-tuning reads weights only, never a "
        "model that may be a pickle.",
    )
    kind: Literal["auto", "run", "checkpoint", "torchvision"] = Field(
        "auto",
        description="What `source` is. `auto`: a checkpoint directory, else a file "
        "(torchvision), else a run.",
    )
    head: Literal["auto", "keep", "replace"] = Field(
        "auto",
        description="The classifier (`fc`): `replace` starts a new one, `keep` loads it (the "
        "class counts must agree), `auto` replaces it when they differ.",
    )
    freeze: list[Literal["stem", "layer1", "layer2", "layer3", "layer4"]] = Field(
        default_factory=list,
        description="Parts left untrained: their weights get no gradient and their BatchNorm "
        "layers stay in eval mode (running statistics fixed).",
    )

    @model_validator(mode="before")
    @classmethod
    def _absolute_source(cls, data: Any) -> Any:
        # An empty source stays empty for `min_length` to refuse (it would resolve to the cwd).
        if isinstance(data, dict) and isinstance(data.get("source"), str) and data["source"]:
            from resnetctl.storage.model_source import absolute_source

            return {**data, "source": absolute_source(data["source"])}
        return data

    @field_validator("source")
    @classmethod
    def _weights_only(cls, source: str) -> str:
        if source.startswith(MLFLOW_SCHEMES):
            raise ValueError(
                "an MLflow model is not a fine-tuning source. Fine-tuning reads "
                "weights only (a run's checkpoint, or a state-dict file, with "
                "torch.load(weights_only=True)), never a model that may be a pickle, whose "
                "loading runs code: give the run's name or its checkpoint folder"
            )
        return source

    @model_validator(mode="after")
    def _check_freeze(self) -> ModelInit:
        repeated = sorted({part for part in self.freeze if self.freeze.count(part) > 1})
        if repeated:
            raise ValueError(f"freeze: {', '.join(repeated)} given twice")
        return self


class ModelSpec(StrictModel):
    """The network: a registry name, or a family and depth.

    `name: resnet50` and `family: imagenet, depth: 50` mean the same model; `variant: plain`
    selects the twin without shortcuts.
    """

    name: str | None = Field(
        None,
        min_length=1,
        description="Registry name (see `resnetctl models`), e.g. resnet50 or cifar_resnet56.",
    )
    family: Literal["imagenet", "cifar"] | None = Field(
        None, description="Model family, used with depth when no name is given."
    )
    depth: int | None = Field(
        None, ge=1, description="Depth: 18/34/50/101/152 for imagenet, 6n+2 for cifar."
    )
    variant: Literal["residual", "plain"] = Field(
        "residual", description="`residual` (ResNet) or `plain` (the same stack, no shortcuts)."
    )
    shortcut: Literal["A", "B", "C"] | None = Field(
        None,
        description="Shortcut option of Table 3: A zero-pad, B project when dimensions grow, "
        "C project always. Default: the family's (B for imagenet, A for cifar).",
    )
    stride_in_1x1: bool = Field(
        True,
        description="Bottlenecks: stride 2 in the first 1x1 (the paper) or, if false, in the 3x3 "
        "(torchvision's v1.5).",
    )
    zero_init_residual: bool = Field(
        False, description="Zero the last BN of each residual block (Goyal et al. 2017)."
    )
    num_classes: int | None = Field(
        None, ge=2, description="Classifier outputs; default: the number of classes in the data."
    )
    init: ModelInit | None = Field(
        None, description="Initial weights from a run, a checkpoint or a torchvision file."
    )

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: Any) -> Any:
        # Fill in what the given fields imply, so the dumped spec says exactly what trains.
        if not isinstance(data, dict):
            return data
        resolved = resolve_identity(data)
        return data if resolved is None else {**data, **resolved}

    @model_validator(mode="after")
    def _check_init_fits(self) -> ModelSpec:
        if self.init is not None:
            assert self.name is not None  # filled in by `_resolve`
            self._check_init(self.name, model_info(self.name))
        return self

    def _check_init(self, name: str, info: ModelInfo) -> None:
        init = self.init
        assert init is not None
        family, depth = info.family, info.depth
        if family == "cifar" and "layer4" in init.freeze:
            raise ValueError(f"init.freeze: {name} has three stages; layer4 does not exist")
        if info.preact and "stem" in init.freeze:
            raise ValueError(f"init.freeze: the stem of pre-activation net {name} has no BN")
        if init.kind == "torchvision":
            if family != "imagenet" or info.plain:
                raise ValueError(
                    f"init.kind torchvision: torchvision's ResNets fit the imagenet residual "
                    f"nets, not {name}"
                )
            if depth >= 50 and self.stride_in_1x1:
                raise ValueError(
                    "init.kind torchvision: torchvision's bottlenecks stride in the 3x3 (v1.5); "
                    "set model.stride_in_1x1: false or the weights compute something else"
                )
            if self.shortcut not in (None, "B"):
                raise ValueError(
                    f"init.kind torchvision: torchvision's ResNets use shortcut B, not "
                    f"{self.shortcut}"
                )

    def create_options(self, num_classes: int) -> dict[str, object]:
        """Keyword options for `resnetctl.models.create_model(self.name, ...)`."""
        options: dict[str, object] = {
            "num_classes": self.num_classes or num_classes,
            "zero_init_residual": self.zero_init_residual,
        }
        if self.shortcut is not None:
            options["shortcut"] = self.shortcut
        if self.family == "imagenet":
            options["stride_in_1x1"] = self.stride_in_1x1
        return options


#: The fields that say which network a `ModelSpec` is; the rest only configure it.
_IDENTITY = ("name", "family", "depth", "variant", "shortcut", "zero_init_residual")
# The identity fields alone, validated as `ModelSpec` validates them, before resolving them.
_Identity = create_model(  # type: ignore[call-overload]
    "_Identity",
    __config__=ConfigDict(extra="ignore"),
    **{f: (ModelSpec.model_fields[f].annotation, ModelSpec.model_fields[f]) for f in _IDENTITY},
)


def resolve_identity(data: dict[str, Any]) -> dict[str, Any] | None:
    """Name, family, depth, variant and shortcut as the catalog resolves the `model:` mapping
    `data`; None when a field is malformed (its own validation then says so). Raises
    ValueError for an unknown model or fields that contradict each other."""
    try:
        given = _Identity.model_validate(data)
    except ValidationError:
        return None
    if given.name is None:
        if given.family is None or given.depth is None:
            raise ValueError("give either `name`, or both `family` and `depth`")
        name = model_name(given.family, given.depth, plain=given.variant == "plain")
    else:
        name = given.name
    try:
        info = model_info(name)
    except (KeyError, ValueError) as exc:  # the catalog's message names the valid depths
        raise ValueError(exc.args[0] if exc.args else str(exc)) from None
    for field, value, actual in (
        ("family", given.family, info.family),
        ("depth", given.depth, info.depth),
    ):
        if value is not None and value != actual:
            raise ValueError(f"{field}: {value!r} contradicts name {name!r} ({actual!r})")
    if given.name is not None and "variant" in data:
        if (given.variant == "plain") != info.plain:
            raise ValueError(f"variant: {given.variant!r} contradicts name {name!r}")
    if info.plain and given.shortcut is not None:
        raise ValueError(f"shortcut: plain net {name!r} has no shortcuts")
    if info.plain and given.zero_init_residual:
        raise ValueError(f"zero_init_residual: plain net {name!r} has no residual branch to zero")
    return {
        "name": name,
        "family": info.family,
        "depth": info.depth,
        "variant": "plain" if info.plain else "residual",
        "shortcut": None if info.plain else (given.shortcut or info.shortcut),
    }
