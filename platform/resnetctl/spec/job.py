"""`JobSpec`: the whole job, and the rules that tie its sections together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field, PrivateAttr, model_validator

from resnetctl.spec.base import StrictModel
from resnetctl.spec.data import CifarPipeline, DataSpec, ImageNetPipeline
from resnetctl.spec.elastic import BatchSplit, batch_split, unsplittable_counts
from resnetctl.spec.feasibility import (
    batch_norm_problems,
    count_problems,
    generated_counts,
    image_problems,
    source_image_size,
)
from resnetctl.spec.metrics import EMA_METRICS, public_name
from resnetctl.spec.model import ModelSpec, resolve_identity
from resnetctl.spec.runtime import CheckpointSpec, FailureSpec, ResourcesSpec
from resnetctl.spec.search import SearchSection
from resnetctl.spec.tracking import TrackingSpec
from resnetctl.spec.train import StepSchedule, TrainSpec

# The input each model family was trained with in the paper.
FAMILY_PIPELINES = {"imagenet": ImageNetPipeline, "cifar": CifarPipeline}
# The global batch at which each of the paper's recipes uses lr 0.1: section 4.2 (CIFAR, 128)
# and section 3.4 (ImageNet, 256). The default of `train.lr_reference_batch`, so a spec that
# leaves it out trains at the paper's rate instead of half of it.
PIPELINE_LR_REFERENCE_BATCH = {"cifar": 128, "imagenet": 256}


class JobSpec(StrictModel):
    """A training job: one YAML file, validated before anything starts."""

    name: str = Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description="Job name: letters, digits, `.`, `_`, `-`; names the Ray run and MLflow run.",
    )
    description: str = Field("", description="Free text shown in listings.")
    model: ModelSpec = Field(description="The network.")
    data: DataSpec = Field(description="The data set and input pipeline.")
    train: TrainSpec = Field(description="Optimisation.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="Placement.")
    checkpoint: CheckpointSpec = Field(
        default_factory=CheckpointSpec, description="Checkpointing and resume."
    )
    failure: FailureSpec = Field(default_factory=FailureSpec, description="Fault tolerance.")
    tracking: TrackingSpec = Field(default_factory=TrackingSpec, description="MLflow tracking.")
    # Left out of every dump: a trial, `best/spec.yaml` and `spec/resolved.yaml` are single runs.
    search: SearchSection | None = Field(
        None,
        exclude=True,
        description="`resnetctl tune` only: spec fields by dotted path (`train.base_lr`), each "
        "mapped to one of `{grid: [...]}`, `{choice: [...]}`, `{uniform: [low, high]}`, "
        "`{loguniform: [low, high]}`; `submit` trains the spec without it.",
    )

    # Set by the loader: maps a field path to `file:line` (or the `--set` that wrote it).
    _locator: Callable[[tuple[str | int, ...]], str] | None = PrivateAttr(None)

    def where(self, *path: str | int) -> str:
        """Where the field at `path` was written, for error messages."""
        return self._locator(tuple(path)) if self._locator else "<spec>"

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_other_sections(cls, data: Any) -> Any:
        # The pipeline defaults to the model family's, and the lr reference batch to the
        # pipeline's recipe: filled in before validation so every section is built once.
        if not isinstance(data, dict):
            return data
        family = _family(data.get("model"))
        pipeline = FAMILY_PIPELINES[family]() if family else None
        sections = {"data": _filled(data.get("data"), "pipeline", pipeline)}
        kind = _kind(_get(sections["data"], "pipeline"))
        reference = PIPELINE_LR_REFERENCE_BATCH.get(kind) if kind else None
        sections["train"] = _filled(data.get("train"), "lr_reference_batch", reference)
        return {**data, **{k: v for k, v in sections.items() if k in data}}

    @model_validator(mode="after")
    def _cross_section(self) -> JobSpec:
        workers = self.resources.max_workers
        train = self.train
        if train.global_batch_size is not None and train.global_batch_size % workers:
            raise ValueError(
                f"train.global_batch_size {train.global_batch_size} is not divisible by "
                f"resources.workers {workers}"
            )
        micro = workers * train.accumulation_steps
        if train.global_batch_size is not None and train.global_batch_size % micro:
            raise ValueError(
                f"train.global_batch_size {train.global_batch_size} is not divisible by "
                f"resources.workers x train.accumulation_steps ({micro})"
            )
        elastic_problem = _elastic_problem(self)
        if elastic_problem:
            raise ValueError(elastic_problem)
        if self.checkpoint.metric in EMA_METRICS and train.ema is None:
            metric = public_name(self.checkpoint.metric)
            raise ValueError(f"checkpoint.metric {metric} needs train.ema")
        if train.precision == "fp16" and not self.resources.use_gpu:
            raise ValueError("train.precision fp16 needs GPUs (resources.use_gpu); use bf16 on CPU")
        if train.sync_bn and not self.resources.use_gpu:
            raise ValueError("train.sync_bn needs GPUs: torch's SyncBatchNorm has no CPU kernel")
        if self.data.device == "gpu" and not self.resources.use_gpu:
            raise ValueError("data.device gpu needs resources.use_gpu: true")
        if train.final_eval is not None and self.pipeline.kind != "imagenet":
            raise ValueError(
                f"train.final_eval protocol {train.final_eval.protocol} needs the imagenet "
                f"pipeline, not {self.pipeline.kind!r}; remove train.final_eval"
            )
        # Generated sources know their image size and counts: check now what a dry run checks
        # once it has scanned a folder.
        size = source_image_size(self)
        problems = batch_norm_problems(self)
        problems += image_problems(self, size) if size is not None else []
        counts = generated_counts(self)
        if counts is not None:
            problems += count_problems(self, *counts)
        if problems:
            raise ValueError(problems[0][1])
        return self

    def split(self, workers: int | None = None) -> BatchSplit:
        """Per-worker batch, accumulation, global batch and peak lr at `workers` (default: the
        plan's count, `resources.max_workers`); see `resnetctl.spec.elastic`."""
        count = self.resources.max_workers if workers is None else workers
        return batch_split(self.train, self.resources, count)

    @property
    def pipeline(self) -> ImageNetPipeline | CifarPipeline:
        """The resolved input pipeline."""
        assert self.data.pipeline is not None
        return self.data.pipeline


def _elastic_problem(spec: JobSpec) -> str | None:
    """What makes a worker range unusable: counts where the global batch has no whole split
    (`keep_global_batch`), or lengths in iterations whose meaning would change with the global
    batch (`scale_lr`)."""
    res, train = spec.resources, spec.train
    if not res.elastic:
        return None
    span = f"{{min: {res.min_workers}, max: {res.max_workers}}}"
    if res.elastic_policy == "keep_global_batch":
        missing = unsplittable_counts(train, res)
        if missing:
            split = spec.split()
            counts = ", ".join(map(str, missing))
            return (
                f"resources.workers {span} with elastic_policy keep_global_batch: the global "
                f"batch {split.global_batch} has no whole split into micro-batches of at most "
                f"{split.per_worker_batch} images at {counts} worker"
                f"{'s' if missing[-1] > 1 else ''}; pick a range whose every count divides "
                f"{split.global_batch}, or elastic_policy scale_lr"
            )
        return None
    in_iterations = []
    if train.iterations is not None:
        in_iterations.append("train.iterations")
    if train.warmup.length and train.warmup.unit == "iteration":
        in_iterations.append("train.warmup.length")
    schedule = train.schedule
    if isinstance(schedule, StepSchedule) and schedule.unit == "iteration":
        in_iterations.append("train.schedule.milestones")
    if in_iterations:
        return (
            f"resources.elastic_policy scale_lr changes the global batch with the workers "
            f"({span}), so an iteration is another amount of data at each count: give "
            f"{', '.join(in_iterations)} in epochs, or use keep_global_batch"
        )
    return None


def _get(section: Any, key: str) -> Any:
    if isinstance(section, dict):
        return section.get(key)
    return getattr(section, key, None) if isinstance(section, BaseModel) else None


def _filled(section: Any, key: str, value: Any) -> Any:
    """`section` (a mapping or a validated model) with `key` set to `value` where it is unset."""
    if value is None or _get(section, key) is not None:
        return section
    if isinstance(section, dict):
        return {**section, key: value}
    if isinstance(section, BaseModel):
        return section.model_copy(update={key: value})
    return section  # malformed: the section's own validation reports it


def _family(model: Any) -> str | None:
    """The model family a `model:` section resolves to, or None when it does not resolve."""
    if isinstance(model, ModelSpec):
        return model.family
    if not isinstance(model, dict):
        return None
    try:
        identity = resolve_identity(model)
    except ValueError:  # `model` itself reports it
        return None
    return identity["family"] if identity else None


def _kind(pipeline: Any) -> str | None:
    kind = _get(pipeline, "kind")
    return kind if isinstance(kind, str) else None
