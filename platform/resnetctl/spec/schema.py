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
    "  logs `val_top1_error_10crop_pct` and `val_top5_error_10crop_pct`: compare those.",
    "  `data.pipeline.ten_crop: true` instead makes every epoch's validation 10-crop (10x slower).",
    "  Table 4's multi-scale fully-convolutional test, and 10-crop on any saved run:",
    "  `resnetctl eval RUN --protocol multi_scale` (see after-training.md).",
    "- **CIFAR-10, Table 6** (`jobs/cifar-*.yaml`): schedule `step` in iterations, lr 0.1 at batch",
    "  128 (the default `lr_reference_batch` of the cifar pipeline) divided by 10 at 32k and 48k",
    "  iterations, 64k in all; ResNet-110 and 1202 warm up at lr 0.01 for 400 iterations. The",
    "  paper tests on the single original 32x32 image: the per-epoch `val_top1_error_pct` is that",
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
    "  `val_top1_error_ema_pct`, `val_top5_error_ema_pct`, saved in checkpoints and restored on",
    "  resume. `checkpoint.metric: val_top1_error_ema_pct` ranks checkpoints by the EMA, and the",
    "  final evaluation then evaluates the best EMA weights.",
    "- **Mixup / CutMix** (`train.mix`): soft targets, smoothed by `train.label_smoothing`;",
    "  `train_top1_error_pct` is then measured against the unmixed labels (it rises, as expected).",
    "- **Policy augmentation** (`data.pipeline.auto_augment`, `random_erasing`): DALI's",
    "  `nvidia.dali.auto_aug` on the uint8 crop, CPU and GPU pipelines alike; random erasing",
    "  after normalisation. Both in training only.",
    "- **`train.compile`**: `torch.compile` of each worker's model; see docs/benchmarks.md for",
    "  when it pays off on CPU.",
    "- **Elastic workers** (`resources.workers: {min: M, max: N}`): the run starts once M",
    "  workers fit, goes on with fewer (down to M) when a node is lost and grows back to N;",
    "  the plan is made at N. `resources.elastic_policy: keep_global_batch` (the default) keeps",
    "  its global batch, rate and schedule at every count, changing the per-worker batch and",
    "  the accumulation; `scale_lr` keeps the per-worker batch and scales batch and rate. See",
    "  docs/cluster.md, 'Elastic runs'.",
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
        "this file is stale. Every section rejects unknown keys, and a key given twice in one",
        "mapping. Strings may use `${VAR}` or `${VAR:-default}` to read environment variables;",
        "any field can be overridden on the command line with `--set dotted.path=value`. An",
        "override applies before variables are read, so a field it replaces needs no variable,",
        "and setting a `kind` (`--set data.source.kind=synthetic`) drops the old kind's keys.",
        "",
        "`resnetctl validate` reports an unset variable as a warning (a data path that only the",
        "cluster has) and exits 0 if the rest is valid; `resnetctl submit`, `--dry-run` too,",
        "refuses it (exit 2) unless `--set` gives the field.",
        "",
        "Besides each field's constraints, a spec is refused when its values cannot run together:",
        "fractional `gpus_per_worker` for several NCCL workers; one image per worker where an",
        "ImageNet ResNet's last stage is 1x1 (crop 32 or less: BatchNorm cannot train); and",
        "what the data set's size",
        "rules out: a CIFAR crop larger than the padded image; a batch per worker larger than a",
        "worker's share of the training images; fewer validation images than workers; fewer",
        "`model.num_classes` than classes in the data; step milestones or warm-up given in",
        "epochs for a run in iterations (or the reverse) that lie beyond the run. What a",
        "generated source tells by itself (its image size; a synthetic set's counts) is checked",
        "when the spec is loaded, the rest by `submit --dry-run` once it has prepared the data.",
        "Without `--address`, `submit` (and `--dry-run`) also checks that the workers fit the",
        "embedded Ray: `resources.workers` bundles of `cpus_per_worker` within the CPUs this",
        "process may use, and the GPUs asked for.",
        "",
        "## Trying a job on this machine: `submit --smoke`",
        "",
        "`resnetctl submit FILE --smoke` runs the same job end to end on this machine in a",
        "minute or two, before GPUs are paid for: the same model, input pipeline and",
        "augmentation, optimiser, schedule kind, checkpointing and MLflow tracking, on",
        "`kind: synthetic` images at the job's input size (the pipeline's crop), for 2 epochs of",
        "2 steps of 4 images per worker, on up to 2 CPU workers (or one per GPU when CUDA is",
        "present). fp16 and `sync_bn` are turned off without GPUs, step milestones and warm-up",
        "are squeezed into the short run, every epoch is checkpointed, and the run is named",
        "`<name>-smoke` with the tag `resnetctl.smoke: true`. The data set's variable need not be",
        "set. `--smoke-size PIXELS` scales the pipeline's crop, resize and padding down for a",
        "faster run; `--smoke --dry-run` prints the smoke spec and its plan.",
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
            nested.append((child_prefix(prefix, name, info.annotation), models))
    lines.append("")
    for nested_prefix, models in nested:
        for child in models:
            kind = _kind(child)
            suffix = f" (kind: {kind})" if kind is not None and len(models) > 1 else ""
            _section(child, nested_prefix, lines, level + 1, suffix)


def child_prefix(prefix: str, name: str, annotation: Any) -> str:
    """The prefix of the fields of a section: `train.` for `train`, and `search.<path>.` for the
    values of a mapping such as `search` (keyed by a path the user chooses)."""
    if _mapping_of_models(annotation):
        return f"{prefix}{name}.<path>."
    return f"{prefix}{name}."


def _mapping_of_models(annotation: Any) -> bool:
    if typing.get_origin(annotation) is dict:
        return bool(_models_in(typing.get_args(annotation)[1]))
    return any(_mapping_of_models(arg) for arg in typing.get_args(annotation))


def _kind(model: type[BaseModel]) -> str | None:
    """The tag of a variant: its `kind` field's default, or a class-level `kind` (the search
    domains, told apart by their one key)."""
    field = model.model_fields.get("kind")
    if field is not None:
        return field.default
    return getattr(model, "kind", None) if "kind" in model.__class_vars__ else None


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
        if "kind" in annotation.model_fields:
            return f"`kind: {_kind(annotation)}`"
        kind = _kind(annotation)
        return f"`{{{kind}: ...}}`" if kind is not None else "section"
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
