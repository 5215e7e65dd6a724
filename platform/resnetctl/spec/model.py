"""`model`: which network of the paper to train."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from resnetctl.spec.base import StrictModel

#: Parts of a ResNet that `model.init.freeze` can freeze: the stem (first conv and its BN) and
#: the stages, named as the network's modules are.
FREEZABLE = ("stem", "layer1", "layer2", "layer3", "layer4")


class ModelInit(StrictModel):
    """Start from trained weights (fine-tuning) instead of He initialisation.

    The weights are loaded on every worker before DDP wraps the model. A resumed run loads its
    checkpoint afterwards, so only the freezing matters then.
    """

    source: str = Field(
        min_length=1,
        description="A run name under the storage root, a run or checkpoint directory, or "
        "(kind torchvision) a state-dict file saved by `torch.save(model.state_dict())`. No "
        "download happens at run time: the file must be on every worker's disk.",
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

    @model_validator(mode="after")
    def _resolve(self) -> ModelInit:
        from resnetctl.inference.source import absolute_source

        absolute = absolute_source(self.source)
        if absolute != self.source:
            object.__setattr__(self, "source", absolute)
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

    @model_validator(mode="after")
    def _resolve(self) -> ModelSpec:
        # Imported here: the registry pulls in torch, which a spec that fails early never needs.
        from resnetctl.models import get_model_info, model_name

        if self.name is None:
            if self.family is None or self.depth is None:
                raise ValueError("give either `name`, or both `family` and `depth`")
            name = model_name(self.family, self.depth, plain=self.variant == "plain")
        else:
            name = self.name
        try:
            info = get_model_info(name)
        except (KeyError, ValueError) as exc:  # the registry's message names the valid depths
            raise ValueError(exc.args[0] if exc.args else str(exc)) from None
        for field, given, actual in (
            ("family", self.family, info.family),
            ("depth", self.depth, info.depth),
        ):
            if given is not None and given != actual:
                raise ValueError(f"{field}: {given!r} contradicts name {name!r} ({actual!r})")
        if self.name is not None and "variant" in self.model_fields_set:
            if (self.variant == "plain") != info.plain:
                raise ValueError(f"variant: {self.variant!r} contradicts name {name!r}")
        if info.plain and self.shortcut is not None:
            raise ValueError(f"shortcut: plain net {name!r} has no shortcuts")
        if info.plain and self.zero_init_residual:
            raise ValueError(
                f"zero_init_residual: plain net {name!r} has no residual branch to zero"
            )
        if self.init is not None:
            self._check_init(name, info)
        # Write the resolution back so the dumped spec says exactly what trains.
        values = {
            "name": name,
            "family": info.family,
            "depth": info.depth,
            "variant": "plain" if info.plain else "residual",
            "shortcut": None if info.plain else (self.shortcut or info.shortcut),
        }
        for key, value in values.items():
            if getattr(self, key) != value:
                object.__setattr__(self, key, value)
        return self

    def _check_init(self, name: str, info: object) -> None:
        init = self.init
        assert init is not None
        family, depth = getattr(info, "family", None), getattr(info, "depth", 0)
        if family == "cifar" and "layer4" in init.freeze:
            raise ValueError(f"init.freeze: {name} has three stages; layer4 does not exist")
        if getattr(info, "preact", False) and "stem" in init.freeze:
            raise ValueError(f"init.freeze: the stem of pre-activation net {name} has no BN")
        if init.kind == "torchvision":
            if family != "imagenet" or getattr(info, "plain", False):
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
