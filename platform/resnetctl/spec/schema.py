"""The JSON schema and the field reference, both generated from the `JobSpec` models."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from resnetctl.spec.job import JobSpec

SCHEMA_ID = "https://resnetctl.dev/schema/job-spec.json"


# Which settings give numbers comparable to the paper's tables; part of `docs/job-spec.md`.
PAPER_PROTOCOLS = [
    "## Reproducing the paper's numbers",
    "",
    "- **ImageNet, Tables 2 and 3** (`jobs/r*.yaml`, `jobs/plain*.yaml`): schedule `step`, lr 0.1",
    "  at batch 256 divided by 10 at epochs 30 and 60, 120 epochs (60e4 iterations). The paper",
    "  says the rate is divided 'when the error plateaus'; its reference training divided at about",
    "  epochs 30 and 60, and a fixed schedule does not move with validation noise. The `plateau`",
    "  schedule is the variant that follows the wording: it compares the mean of the last",
    "  `window` epochs, rests `cooldown` epochs after a drop and stops after `max_drops` (2).",
    "- **ImageNet test protocol**: the tables are 10-crop (corners and centre of the image resized",
    "  to 256, and their mirrors, probabilities averaged). Per-epoch `val_*` metrics are",
    "  single-crop and are not comparable to the tables; `train.final_eval: {protocol: ten_crop}`",
    "  (on in the ImageNet job files) evaluates the best checkpoint once after the last epoch and",
    "  logs `val_top1_error_10crop` and `val_top5_error_10crop`, in percent: compare those.",
    "  `data.pipeline.ten_crop: true` instead makes every epoch's validation 10-crop (10x slower).",
    "  Table 4's multi-scale fully-convolutional testing is not implemented.",
    "- **CIFAR-10, Table 6** (`jobs/cifar-*.yaml`): schedule `step` in iterations, lr 0.1 at batch",
    "  128 (the default `lr_reference_batch` of the cifar pipeline) divided by 10 at 32k and 48k",
    "  iterations, 64k in all; ResNet-110 and 1202 warm up at lr 0.01 for 400 iterations. The",
    "  paper tests on the single original 32x32 image: the per-epoch `val_top1_error` is that",
    "  protocol, and no final evaluation is needed.",
    "",
]


# Beyond the paper: what modern recipes (timm, torchvision's references, NVIDIA's
# DeepLearningExamples) add, and how the pieces combine; part of `docs/job-spec.md`.
RECIPE_FEATURES = [
    "## Beyond the paper: modern recipe features",
    "",
    "All are off by default, so a job file of the paper trains as before.",
    "",
    "- **Gradient accumulation** (`train.accumulation_steps: k`): each optimiser step sums the",
    "  gradients of k micro-batches of `batch_size_per_worker` images; the global batch, the",
    "  linear scaling rule, `iterations`, milestones and warm-up all count optimiser steps of",
    "  workers x batch x k images. Under DDP the gradients are all-reduced once per step",
    "  (`no_sync` on the first k-1 micro-batches). Without BN it equals the big batch within",
    "  float rounding; BN normalises each micro-batch alone, as it would on k more workers.",
    "- **Gradient clipping** (`train.grad_clip_norm`): the global L2 norm after DDP's averaging;",
    "  with `log_every_n_steps` the norm before clipping is logged as `step_grad_norm`.",
    "- **Per-step metrics** (`train.log_every_n_steps: N`): `step_train_loss`, `step_lr`,",
    "  `step_images_per_second` at every N-th global step, MLflow step = global step, no",
    "  checkpoint. Every report makes all workers meet once: choose N for one report every 30 s",
    "  or more. Tune sweeps see the epoch reports only.",
    "- **EMA of the weights** (`train.ema`): evaluated after every epoch as `val_loss_ema`,",
    "  `val_top1_error_ema`, `val_top5_error_ema`, saved in checkpoints and restored on resume.",
    "  `checkpoint.metric: val_top1_error_ema` ranks checkpoints by the EMA, and the final",
    "  evaluation then evaluates the best EMA weights.",
    "- **Mixup / CutMix** (`train.mix`): soft targets, smoothed by `train.label_smoothing`;",
    "  `train_top1_error` is then measured against the unmixed labels (it rises, as expected).",
    "- **Policy augmentation** (`data.pipeline.auto_augment`, `random_erasing`): DALI's",
    "  `nvidia.dali.auto_aug` on the uint8 crop, CPU and GPU pipelines alike; random erasing",
    "  after normalisation. Both in training only.",
    "- **`train.compile`**: `torch.compile` of each worker's model; see docs/benchmarks.md for",
    "  when it pays off on CPU.",
    "",
]


def json_schema() -> dict[str, Any]:
    """The JSON schema of a job spec file (what editors use to complete and check YAML)."""
    schema = JobSpec.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID, **schema}


def json_schema_text() -> str:
    """The schema as committed in `docs/job-spec.schema.json`."""
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def markdown_reference() -> str:
    """`docs/job-spec.md`: every field with its type, default, constraints and description."""
    lines = [
        "# Job spec reference",
        "",
        "Generated from the `JobSpec` models by `resnetctl schema --markdown`; a test fails when",
        "this file is stale. Every section rejects unknown keys. Strings may use `${VAR}` or",
        "`${VAR:-default}` to read environment variables; any field can be overridden on the",
        "command line with `--set dotted.path=value`.",
        "",
        *PAPER_PROTOCOLS,
        *RECIPE_FEATURES,
    ]
    _section(JobSpec, "", lines, level=2)
    return "\n".join(lines).rstrip() + "\n"


def _section(
    model: type[BaseModel], prefix: str, lines: list[str], level: int, suffix: str = ""
) -> None:
    title = prefix.rstrip(".") or "top level"
    lines += [f"{'#' * level} `{title}`{suffix}", "", _doc(model), ""]
    lines += ["| field | type | default | constraints | description |", "|---|---|---|---|---|"]
    nested: list[tuple[str, list[type[BaseModel]]]] = []
    for name, info in model.model_fields.items():
        models = _models_in(info.annotation)
        lines.append(
            f"| `{prefix}{name}` | {_type_name(info.annotation)} | {_default(info)} | "
            f"{_constraints(info)} | {(info.description or '').replace('|', '/')} |"
        )
        if models:
            nested.append((f"{prefix}{name}.", models))
    lines.append("")
    for child_prefix, models in nested:
        for child in models:
            kind = child.model_fields.get("kind")
            suffix = f" (kind: {kind.default})" if kind is not None and len(models) > 1 else ""
            _section(child, child_prefix, lines, level + 1, suffix)


def _doc(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").split())


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin is typing.Annotated:
        return _type_name(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        kind = annotation.model_fields.get("kind")
        return f"`kind: {kind.default}`" if kind is not None else "section"
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = info.default_factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return "see below"
        return f"`{json.dumps(value)}`"
    if info.default is PydanticUndefined:
        return "**required**"
    value = info.default
    if isinstance(value, tuple):
        value = list(value)
    return f"`{json.dumps(value, default=str)}`"


def _constraints(info: FieldInfo) -> str:
    symbols = {
        "ge": ">=",
        "gt": ">",
        "le": "<=",
        "lt": "<",
        "min_length": "min length",
        "max_length": "max length",
    }
    parts = []
    for meta in info.metadata:
        for attr, symbol in symbols.items():
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"pattern `{pattern}`")
    return ", ".join(parts)
