"""`train`: length, batch, optimiser, schedule and numerics of a run."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from resnetctl.spec.base import StrictModel
from resnetctl.spec.metrics import EMA_METRICS, RankedMetric, public_name

Unit = Literal["epoch", "iteration"]


class SGDSpec(StrictModel):
    """SGD with momentum, the paper's optimiser."""

    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum.")
    weight_decay: float = Field(1e-4, ge=0.0, le=0.1, description="L2 weight decay.")
    nesterov: bool = Field(False, description="Nesterov momentum.")
    no_weight_decay_on_bn: bool = Field(
        False, description="Exempt BN parameters and biases from weight decay (modern recipes)."
    )

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> SGDSpec:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        return self


class StepSchedule(StrictModel):
    """Divide the learning rate by 1/gamma at fixed milestones (the paper's CIFAR recipe)."""

    kind: Literal["step"] = Field("step", description="Selects this variant.")
    milestones: list[Annotated[int, Field(ge=1)]] = Field(
        description="Epochs or iterations (see unit) at which the rate is multiplied by gamma."
    )
    unit: Unit = Field("epoch", description="Unit of the milestones.")
    gamma: float = Field(0.1, gt=0.0, lt=1.0, description="Multiplier at each milestone.")

    @model_validator(mode="after")
    def _increasing(self) -> StepSchedule:
        if not self.milestones:
            raise ValueError("milestones must not be empty")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:], strict=False)):
            raise ValueError(f"milestones {self.milestones} must be strictly increasing")
        return self


class PlateauSchedule(StrictModel):
    """Divide the rate by 10 when a metric stops improving: the paper's wording for ImageNet
    ("divided by 10 when the error plateaus"). When it drops depends on validation noise, so the
    job files reproduce the paper with the step schedule its reference training used (epochs 30
    and 60) and keep this one as a variant; the defaults smooth the metric, wait after each drop
    and stop after the paper's two drops."""

    kind: Literal["plateau"] = Field("plateau", description="Selects this variant.")
    metric: RankedMetric = Field(
        "val_top1_error_pct",
        validate_default=True,
        description="Metric watched for a plateau, by its MLflow name.",
    )
    factor: float = Field(0.1, gt=0.0, lt=1.0, description="Multiplier when a plateau is found.")
    patience: int = Field(5, ge=0, description="Epochs without improvement before dividing.")
    threshold: float = Field(
        1e-3, ge=0.0, description="Relative change that counts as improvement."
    )
    min_lr: float = Field(0.0, ge=0.0, description="Lower bound on the rate.")
    window: int = Field(
        3,
        ge=1,
        description="The metric compared is the mean of the last `window` epochs' values "
        "(1: the raw value, torch's ReduceLROnPlateau); damps epoch-to-epoch noise. No decision "
        "is taken before the window is full.",
    )
    cooldown: int = Field(
        5,
        ge=0,
        description="Epochs after a drop during which no epoch counts as bad, so the new rate "
        "shows its effect before the next decision.",
    )
    max_drops: int | None = Field(
        2,
        ge=0,
        description="Most drops in a run (null: no bound). The paper's ImageNet runs divided "
        "twice, 0.1 to 0.001.",
    )


class CosineSchedule(StrictModel):
    """Cosine decay to min_lr over the run, per iteration."""

    kind: Literal["cosine"] = Field("cosine", description="Selects this variant.")
    min_lr: float = Field(0.0, ge=0.0, description="Rate at the end of the run.")


class ConstantSchedule(StrictModel):
    """A fixed rate (after warm-up)."""

    kind: Literal["constant"] = Field("constant", description="Selects this variant.")


Schedule = Annotated[
    StepSchedule | PlateauSchedule | CosineSchedule | ConstantSchedule,
    Field(discriminator="kind"),
]


class WarmupSpec(StrictModel):
    """Start below the base rate; the paper warms ResNet-110 at lr 0.01 for ~400 iterations."""

    length: int = Field(0, ge=0, description="Warm-up length in `unit`s; 0 disables warm-up.")
    unit: Unit = Field("iteration", description="Unit of length.")
    start_factor: float = Field(
        0.1, gt=0.0, le=1.0, description="Rate at the start, as a fraction of the base rate."
    )
    mode: Literal["linear", "constant"] = Field(
        "linear",
        description="`linear` ramps to the base rate; `constant` holds start_factor (the paper).",
    )


class FinalEvalSpec(StrictModel):
    """After the last epoch, evaluate the best checkpoint (by `checkpoint.metric`) with the
    paper's test protocol, once, and report it as its own metrics (`val_top1_error_10crop_pct`,
    ..., in percent like `val_top1_error_pct`): per-epoch validation stays single-crop and
    cheap, the paper's ImageNet tables are 10-crop."""

    protocol: Literal["ten_crop"] = Field(
        "ten_crop",
        description="`ten_crop`: the four corners and the centre of the image resized to "
        "`val_resize`, and their mirrors, probabilities averaged (the paper's Tables 2-3; needs "
        "the imagenet pipeline).",
    )
    weights: Literal["best", "last"] = Field(
        "best",
        description="`best`: the checkpoint ranked best by `checkpoint.metric` (among the "
        "checkpointed epochs); `last`: the final weights.",
    )


class EMASpec(StrictModel):
    """An exponential moving average of the weights (and BN buffers), evaluated every epoch as
    `val_*_ema` and checkpointed beside the raw weights (timm's ModelEma, torchvision's
    `--model-ema`). Each update: ema = d * ema + (1 - d) * weights."""

    decay: float = Field(
        0.9998,
        gt=0.0,
        lt=1.0,
        description="Decay d per update. The average spans about every_n_steps / (1 - d) steps: "
        "keep that well under the run's length.",
    )
    warmup: bool = Field(
        True,
        description="Use d_n = min(decay, (1 + n) / (10 + n)) at the n-th update (0-based), so "
        "the random initial weights fade from the average within the first updates.",
    )
    every_n_steps: int = Field(
        1, ge=1, description="Update after every N optimiser steps (cheaper; torchvision uses 32)."
    )


class MixSpec(StrictModel):
    """Mixup (Zhang et al.) and CutMix (Yun et al.) on each training batch, on the device:
    images are blended with (mixup) or pasted into (CutMix) those of the batch rolled by one,
    and the targets become the matching convex mixture of the one-hot labels (then smoothed by
    `train.label_smoothing`). Train errors stay measured against the unmixed labels."""

    mixup_alpha: float = Field(
        0.2, ge=0.0, le=10.0, description="Beta(alpha, alpha) of the mixup ratio; 0: no mixup."
    )
    cutmix_alpha: float = Field(
        1.0, ge=0.0, le=10.0, description="Beta(alpha, alpha) of the CutMix ratio; 0: no CutMix."
    )
    prob: float = Field(
        1.0, ge=0.0, le=1.0, description="Probability that a batch is mixed at all."
    )
    switch_prob: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="With both enabled: probability that a mixed batch uses CutMix, not mixup.",
    )

    @model_validator(mode="after")
    def _something_to_mix(self) -> MixSpec:
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("mixup_alpha and cutmix_alpha are both 0: remove train.mix instead")
        return self


class TrainSpec(StrictModel):
    """How long and how a run trains."""

    epochs: int | None = Field(None, ge=1, description="Training length in epochs.")
    iterations: int | None = Field(None, ge=1, description="Training length in iterations.")
    global_batch_size: int | None = Field(
        None,
        ge=1,
        description="Images per optimiser step over all workers (divisible by workers x "
        "accumulation_steps).",
    )
    batch_size_per_worker: int | None = Field(
        None, ge=1, description="Images per forward pass (micro-batch) per worker."
    )
    accumulation_steps: int = Field(
        1,
        ge=1,
        le=1024,
        description="Micro-batches whose gradients are summed into one optimiser step: global "
        "batch = workers x batch_size_per_worker x accumulation_steps, and the linear scaling "
        "rule, the schedule's steps and `iterations` count optimiser steps of that global batch. "
        "Under DDP the gradients are all-reduced once per optimiser step. BN statistics are "
        "those of each micro-batch, so with BN the result is close to, not equal to, the big "
        "batch.",
    )
    grad_clip_norm: float | None = Field(
        None,
        gt=0.0,
        description="Clip the global L2 norm of the gradients (over all parameters, after DDP's "
        "averaging and the fp16 unscaling) to this value before each optimiser step; null: no "
        "clipping.",
    )
    base_lr: float = Field(
        0.1, gt=0.0, le=100.0, description="Learning rate for a global batch of lr_reference_batch."
    )
    lr_reference_batch: int | None = Field(
        None,
        ge=1,
        description="Linear scaling rule (Goyal et al.): lr = base_lr * global_batch / this. "
        "Default: the batch of the paper's recipe for the pipeline, 128 for `cifar` (lr 0.1 at "
        "batch 128) and 256 for `imagenet` (lr 0.1 at batch 256).",
    )
    optimizer: SGDSpec = Field(default_factory=SGDSpec, description="SGD settings.")
    schedule: Schedule = Field(
        default_factory=PlateauSchedule, description="Learning-rate schedule after warm-up."
    )
    warmup: WarmupSpec = Field(default_factory=WarmupSpec, description="Learning-rate warm-up.")
    ema: EMASpec | None = Field(
        None,
        description="Keep an EMA of the weights, validated every epoch (`val_loss_ema`, "
        "`val_top1_error_ema_pct`, `val_top5_error_ema_pct`) and saved in checkpoints; "
        "`checkpoint.metric` may rank by those. null: no EMA.",
    )
    mix: MixSpec | None = Field(
        None, description="Mixup / CutMix of training batches; null: neither."
    )
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0, description="Label smoothing epsilon.")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="Autocast dtype; fp16 uses a gradient scaler and needs GPUs."
    )
    compile: bool = Field(
        False,
        description="Compile the model's forward and backward with `torch.compile` (TorchInductor) "
        "on each worker; with several workers the DDP-wrapped model, so that Dynamo's "
        "DDPOptimizer cuts the graph at DDP's gradient buckets. The first steps pay the "
        "compilation (tens of seconds to minutes); see docs/benchmarks.md for the measured gain "
        "and when it pays off.",
    )
    channels_last: bool = Field(False, description="NHWC memory format (faster on tensor cores).")
    sync_bn: bool = Field(False, description="Synchronise BN statistics across workers.")
    seed: int = Field(0, ge=0, description="Seed of weights, shuffling and augmentation.")
    log_every_n_steps: int | None = Field(
        None,
        ge=1,
        description="Every N optimiser steps (global step count), report `step_train_loss`, "
        "`step_lr`, `step_images_per_second` (and `step_grad_norm` with clipping) to MLflow "
        "with the global step as MLflow step, besides the per-epoch metrics; no checkpoint is "
        "written. Each report makes all workers meet once (Ray Train), so pick N for a report "
        "every 30 s or more (ImageNet, 256 images/step: 100-500). Also the driver's progress "
        "bar period. null: epoch metrics only, progress every 10 steps.",
    )
    max_nonfinite_steps: int = Field(
        0,
        ge=0,
        description="Consecutive non-finite losses tolerated before the run stops with an error.",
    )
    final_eval: FinalEvalSpec | None = Field(
        None,
        description="Evaluate the best checkpoint once with the paper's test protocol at the end "
        "of the run (the ImageNet job files: 10-crop); null: no final evaluation.",
    )

    @model_validator(mode="after")
    def _one_of(self) -> TrainSpec:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("set exactly one of `epochs` and `iterations`")
        if (self.global_batch_size is None) == (self.batch_size_per_worker is None):
            raise ValueError("set exactly one of `global_batch_size` and `batch_size_per_worker`")
        length, unit = self.length
        if self.warmup.length and self.warmup.unit == unit and self.warmup.length >= length:
            raise ValueError(
                f"warmup.length {self.warmup.length} {unit}s is not shorter than the run "
                f"({length} {unit}s)"
            )
        schedule = self.schedule
        if isinstance(schedule, StepSchedule) and schedule.unit == unit:
            outside = [m for m in schedule.milestones if m >= length]
            if outside:
                raise ValueError(
                    f"schedule.milestones {outside} lie outside the run of {length} {unit}s"
                )
        if isinstance(schedule, PlateauSchedule) and self.iterations is not None:
            raise ValueError("the plateau schedule is evaluated per epoch: set `epochs`")
        if (
            isinstance(schedule, PlateauSchedule)
            and self.ema is None
            and schedule.metric in (EMA_METRICS)
        ):
            raise ValueError(f"schedule.metric {public_name(schedule.metric)} needs train.ema")
        return self

    @property
    def length(self) -> tuple[int, Unit]:
        """The run's length and its unit."""
        if self.epochs is not None:
            return self.epochs, "epoch"
        assert self.iterations is not None
        return self.iterations, "iteration"

    def global_batch(self, workers: int) -> int:
        """Images per optimiser step over all workers (all micro-batches included)."""
        if self.global_batch_size is not None:
            return self.global_batch_size
        assert self.batch_size_per_worker is not None
        return self.batch_size_per_worker * workers * self.accumulation_steps

    def per_worker_batch(self, workers: int) -> int:
        """Images per forward pass (one micro-batch) on one worker."""
        return self.global_batch(workers) // (workers * self.accumulation_steps)

    def scaled_lr(self, workers: int) -> float:
        """The peak rate after the linear scaling rule."""
        return self.lr_for_batch(self.global_batch(workers))

    def lr_for_batch(self, global_batch: int) -> float:
        """The peak rate of a global batch by the linear scaling rule (Goyal et al.)."""
        if self.lr_reference_batch is None:
            # JobSpec fills it from the pipeline; a bare TrainSpec has no pipeline to ask.
            raise ValueError("lr_reference_batch is unset: validate the TrainSpec inside a JobSpec")
        return self.base_lr * global_batch / self.lr_reference_batch
