"""`model.init`: start a run from trained weights (fine-tuning).

resnetctl's ImageNet ResNets use torchvision's parameter names (`conv1`, `bn1`, `layer1.0.conv1`,
`downsample.0`, `fc`), so a torchvision state dict loads as it is; the check below makes a file
that does not fit fail with the names that differ rather than train from a half-loaded net.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from resnetctl.spec.loader import checkpoint_spec
from resnetctl.spec.model import ModelInit

log = logging.getLogger(__name__)

HEAD = ("fc.weight", "fc.bias")
#: Modules of each freezable part (see `resnetctl.spec.model.FREEZABLE`).
PART_MODULES = {"stem": ("conv1", "bn1")}


class InitError(ValueError):
    """The initial weights cannot be loaded into the model; the message says why."""


def _kind(init: ModelInit) -> str:
    if init.kind != "auto":
        return init.kind
    from resnetctl.train.checkpoint import is_checkpoint

    path = Path(init.source).expanduser()
    if is_checkpoint(path):
        return "checkpoint"
    return "torchvision" if path.is_file() else "run"


def _checkpoint_weights(directory: Path, spec: Any = None) -> tuple[dict[str, torch.Tensor], str]:
    """The weights of a checkpoint that its run's ranking metric judged, as eval, export and
    predict load them: the EMA's for a `*_ema` metric, else the model's; and which they are."""
    from resnetctl.train.checkpoint import load_checkpoint, ranked_weights

    state, meta = load_checkpoint(directory)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise InitError(f"{directory}: the checkpoint holds no model state")
    spec = spec or checkpoint_spec(meta)
    weights = ranked_weights(state, spec.checkpoint.metric) if spec is not None else state["model"]
    which = "EMA weights" if weights is not state["model"] else "model weights"
    if spec is not None:
        which += f", ranked by {spec.checkpoint.metric}"
    return weights, f"{directory} ({which})"


def load_init_weights(init: ModelInit) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict `init.source` names (on the CPU), and what it is: the file, or the
    checkpoint and whether its weights are the model's or its EMA's."""
    kind = _kind(init)
    path = Path(init.source).expanduser()
    if kind == "torchvision":
        if not path.is_file():
            raise InitError(f"model.init.source {init.source}: no such state-dict file")
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise InitError(f"{path}: not a state dict ({type(state).__name__})")
        return dict(state), str(path)
    if kind == "checkpoint":
        return _checkpoint_weights(path)
    from resnetctl.storage.model_source import ModelSourceError, locate_checkpoint
    from resnetctl.train.checkpoint import META_FILE

    try:
        checkpoint, _ = locate_checkpoint(init.source)
        meta_file = checkpoint / META_FILE
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        spec = checkpoint_spec(meta)
        if spec is not None:
            # Ranked again by the run's own metric (as `resnetctl eval RUN` does), not the
            # default one.
            checkpoint, _ = locate_checkpoint(init.source, spec=spec)
    except ModelSourceError as exc:
        raise InitError(f"model.init.source: {exc}") from None
    return _checkpoint_weights(checkpoint, spec)


def _stay_in_eval(module: nn.Module, args: Any) -> None:
    # `model.train()` at every epoch would put a frozen stage's BN back into training mode
    # (batch statistics, running averages updated); forcing eval before each forward keeps it
    # what it was trained to be.
    module.training = False


def freeze(model: nn.Module, parts: list[str]) -> list[str]:
    """Stop gradients through `parts` and keep their BatchNorm layers in eval mode.
    Returns the names of the frozen parameters."""
    frozen: list[str] = []
    for part in parts:
        names = PART_MODULES.get(part, (part,))
        for name in names:
            module = getattr(model, name, None)
            if module is None:
                raise InitError(f"model.init.freeze: the model has no {name!r} ({part})")
            for pname, param in module.named_parameters(prefix=name):
                param.requires_grad_(False)
                frozen.append(pname)
            for sub in module.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.register_forward_pre_hook(_stay_in_eval)
    return frozen


def initialise(model: nn.Module, init: ModelInit) -> nn.Module:
    """Load `init`'s weights into `model` (replacing or keeping the head as asked) and freeze
    the parts it names. Every tensor but a replaced head must match by name and shape."""
    weights, origin = load_init_weights(init)
    own = model.state_dict()
    head_differs = any(
        key in weights and key in own and weights[key].shape != own[key].shape for key in HEAD
    )
    if init.head == "keep" and head_differs:
        raise InitError(
            f"model.init.head keep: the source's classifier has {weights['fc.weight'].shape[0]} "
            f"outputs, this model {own['fc.weight'].shape[0]}; use head: replace"
        )
    replace = init.head == "replace" or (init.head == "auto" and head_differs)
    if replace:
        weights = {k: v for k, v in weights.items() if k not in HEAD}
    missing = sorted(set(own) - set(weights) - (set(HEAD) if replace else set()))
    unexpected = sorted(set(weights) - set(own))
    mismatched = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or mismatched:
        parts = [
            f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("other shape", mismatched),
            )
            if keys
        ]
        raise InitError(f"model.init.source {init.source} does not fit: {'; '.join(parts)}")
    model.load_state_dict(weights, strict=False)
    frozen = freeze(model, list(init.freeze))
    log.info(
        "initialised from %s: head %s, %d frozen tensors",
        origin,
        "replaced" if replace else "kept",
        len(frozen),
    )
    return model
