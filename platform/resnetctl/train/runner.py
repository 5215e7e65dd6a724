"""The per-worker training engine: model, data, optimiser, schedule and one epoch at a time.

`Runner` knows nothing about Ray beyond an optional model wrapper, so it runs the same under
Ray Train, under a plain `torch.distributed` process group (tests) or in a single process.
Every method that talks to the other ranks says so; all ranks must call those together.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn

from resnetctl.spec import JobSpec
from resnetctl.spec.metrics import EMA_METRICS, EPOCH_METRICS
from resnetctl.spec.steps import total_steps
from resnetctl.train.batches import AUTOCAST_DTYPES, Batch, Loader, autocast, to_device
from resnetctl.train.build import agreed_steps_per_epoch, build_loaders, build_model
from resnetctl.train.checkpoint import unwrap
from resnetctl.train.ema import WeightsEMA
from resnetctl.train.evaluation import broadcast_buffers, evaluate
from resnetctl.train.final_eval import BestWeights
from resnetctl.train.gradients import clip_gradients, no_sync
from resnetctl.train.metrics import EpochMeter, StepMetrics, Throughput
from resnetctl.train.mixup import build_mixer
from resnetctl.train.nonfinite import NonFiniteLossError, NonFiniteTracker
from resnetctl.train.optim import build_optimizer, set_lr, skips_on_device
from resnetctl.train.placement import ModelWrapper, Placement, all_reduce, seed_everything
from resnetctl.train.position import EpochProgress, SavedPosition, start_epoch
from resnetctl.train.resize import LRRamp, plan_steps_per_epoch
from resnetctl.train.schedules import LRSchedule, build_schedule
from resnetctl.train.state import restore_training_state, training_state
from resnetctl.train.timing import EpochTiming

__all__ = ["AUTOCAST_DTYPES", "Batch", "Loader", "ModelWrapper", "NonFiniteLossError"]
__all__ += ["Placement", "Runner", "StepCallback", "seed_everything"]

log = logging.getLogger(__name__)

StepCallback = Callable[[dict[str, Any]], None]


class StepBoundary(Protocol):
    """Called between two optimiser steps (never inside an accumulation) with the runner, the
    epoch, the steps of the epoch done and the epoch's length; it may write a checkpoint
    (`runner.state_dict()` then captures the position inside the epoch) or raise to stop. A
    collective when it decides to: every rank must decide alike."""

    def __call__(self, runner: Runner, epoch: int, steps_done: int, steps: int) -> None: ...


class Runner:
    """Trains one model on one worker. Build it, optionally `load_state_dict`, then call
    `run_epoch(epoch)` for epoch = `self.epoch + 1`, ... until `finished`.

    `model`, `train_loader` and `val_loader` may be injected (tests); otherwise they come from
    the model registry and `resnetctl.data`.
    """

    def __init__(
        self,
        spec: JobSpec,
        placement: Placement | None = None,
        *,
        model: nn.Module | None = None,
        train_loader: Loader | None = None,
        val_loader: Loader | None = None,
        final_eval_loader: Loader | None = None,
    ) -> None:
        self.spec = spec
        self.placement = placement or Placement()
        self.device = self.placement.device
        self.epoch = 0  # last completed epoch
        self.step = 0  # optimiser steps taken (global, identical on all ranks)
        self.nonfinite = NonFiniteTracker(spec.train.max_nonfinite_steps, self.device)
        # The epoch in progress (None between epochs), and where a restored checkpoint from the
        # middle of an epoch asks the next `train_epoch` to start.
        self.progress: EpochProgress | None = None
        self.resume_position: SavedPosition | None = None
        self.grad_norm: torch.Tensor | None = None  # before clipping, of the last step
        # Batch, accumulation and peak rate at this world size (`spec.elastic`).
        self.split = spec.split(self.placement.world_size)
        # After a resize that changed the global batch (`scale_lr`): the lr moves from the old
        # count's rate to this one's over some steps (`LRRamp`); None otherwise.
        self.lr_ramp: LRRamp | None = None
        self.ten_crop = False  # validation batches are N x 10 x C x H x W
        # The 10-crop loader of `train.final_eval`: injected (tests) or built when first used.
        self.final_eval_loader = final_eval_loader
        self._layout: Any = None
        self._loader_options: dict[str, Any] = {}
        self.best = BestWeights(spec) if spec.train.final_eval is not None else None
        self._setup(model, train_loader, val_loader)

    # ----------------------------------------------------------------------------- setup

    def _setup(
        self, model: nn.Module | None, train_loader: Loader | None, val_loader: Loader | None
    ) -> None:
        train = self.spec.train
        # The same seed on every rank gives identical initial weights before DDP's broadcast.
        seed_everything(train.seed)
        if train_loader is None or val_loader is None:
            loaders = build_loaders(self.spec, self.placement)
            train_loader, val_loader, num_classes = loaders.train, loaders.val, loaders.num_classes
            self.ten_crop = loaders.ten_crop
            self._layout, self._loader_options = loaders.layout, loaders.options
        else:
            num_classes = self.spec.model.num_classes or 0
            if model is None and not num_classes:
                raise ValueError("injected loaders without a model need spec.model.num_classes")
        self.train_loader: Loader = train_loader
        self.val_loader: Loader = val_loader
        self.model = build_model(self.spec, self.placement, model, num_classes)
        self.steps_per_epoch = agreed_steps_per_epoch(
            self.train_loader, self.split.accumulation, self.device
        )
        planned = plan_steps_per_epoch(self.spec, self._layout)
        if planned is not None:
            # The same global batch at every count: an epoch is the plan's steps, so that the
            # schedule, step for step, is the plan's whatever the count.
            self.steps_per_epoch = min(self.steps_per_epoch, planned)
        self.total_steps = total_steps(train, self.steps_per_epoch)
        self.peak_lr = self.split.peak_lr
        self.optimizer = build_optimizer(unwrap(self.model), train.optimizer, self.peak_lr)
        self.schedule: LRSchedule = build_schedule(train, self.peak_lr, self.steps_per_epoch)
        self.ema = None if train.ema is None else WeightsEMA(unwrap(self.model), train.ema)
        self.mixer = build_mixer(train.mix, unwrap(self.model), num_classes)
        if train.compile:
            # The DDP wrapper, as PyTorch documents torch.compile with DDP: Dynamo then meets
            # DDP's forward, and its DDPOptimizer cuts the graph at the gradient buckets so that
            # their all-reduce overlaps the backward. In place (`nn.Module.compile`): state_dict
            # keys, DDP's wrapper and `unwrap` stay as they are, the network inside (which
            # validation runs) and its deep copies (the EMA, the final evaluation) stay eager.
            # In one process there is no wrapper: the network itself is compiled.
            self.model.compile()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=train.precision == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=train.label_smoothing)
        # Validation loss without smoothing, so it compares across recipes.
        self.val_criterion = nn.CrossEntropyLoss()
        # Ranks differ from here on, so that any stochastic layer draws different numbers.
        seed_everything(train.seed + 1_000_003 * self.placement.rank)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class folder names the labels index (None with injected loaders)."""
        return tuple(self._layout.classes) if self._layout is not None else None

    @property
    def layout(self) -> Any:
        """The prepared data set (a `DatasetLayout`; None with injected loaders)."""
        return self._layout

    # --------------------------------------------------------------------------- progress

    @property
    def last_epoch(self) -> int:
        """The number of the run's final epoch (the last one may be partial in iteration mode)."""
        return math.ceil(self.total_steps / self.steps_per_epoch)

    @property
    def finished(self) -> bool:
        """Whether the run has trained for its full length."""
        return self.step >= self.total_steps

    def lr(self) -> float:
        """The rate of the next optimiser step."""
        rate = self.schedule.lr(self.step)
        return rate if self.lr_ramp is None else rate * self.lr_ramp.factor(self.step)

    # ------------------------------------------------------------------------------ train

    def _autocast(self) -> AbstractContextManager[Any]:
        return autocast(self.spec.train.precision, self.device)

    def _to_device(self, images: torch.Tensor, labels: torch.Tensor) -> Batch:
        return to_device(images, labels, self.device, self.spec.train.channels_last)

    def _global_loss(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(some rank's loss is not finite, mean loss over ranks), both on the device: one
        small all-reduce, so every rank takes the same decision about a non-finite loss and
        none is left waiting, and no host sync."""
        value = loss.detach().float()
        finite = torch.isfinite(value)
        packed = torch.stack([(~finite).float(), torch.where(finite, value, 0.0)])
        packed = all_reduce(packed, dist.ReduceOp.SUM)
        return packed[0] > 0, packed[1] / self.placement.world_size

    def _epoch_start_step(self) -> int:
        done = self.progress.steps_done if self.progress is not None else 0
        return self.step - done

    def train_step(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        epoch: int,
        step_in_epoch: int,
        meter: EpochMeter,
    ) -> float:
        """One optimiser step on one batch (a collective). Returns the loss averaged over the
        ranks, as a tensor on the device (read it with `float()` where a host sync is due)."""
        return self.accumulated_step([(images, labels)], epoch, step_in_epoch, meter)

    def accumulated_step(
        self, micro_batches: Sequence[Batch], epoch: int, step_in_epoch: int, meter: EpochMeter
    ) -> torch.Tensor:
        """One optimiser step over `train.accumulation_steps` micro-batches (a collective).

        Each micro-batch's mean loss is divided by their number, so the summed gradients are
        those of the mean loss over the concatenated batch. Under DDP all but the last backward
        run in `no_sync`: gradients are all-reduced once per optimiser step, not per micro-batch.
        A step whose loss is not finite on some rank is skipped on every rank, decided on the
        device (`train.nonfinite`). Returns the loss averaged over the micro-batches and the
        ranks, on the device.
        """
        set_lr(self.optimizer, self.lr())
        count = len(micro_batches)
        seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        for index, (images, labels) in enumerate(micro_batches):
            images, labels = self._to_device(images, labels)
            images, targets = self.mixer(images, labels)
            with no_sync(self.model, last=index == count - 1):
                with self._autocast():
                    logits = self.model(images)
                loss = self.criterion(logits.float(), targets)
                # Backward runs on non-finite losses too: DDP expects every forward to be
                # followed by a backward on all ranks.
                self.scaler.scale(loss / count).backward()
            seen.append((loss.detach(), logits.detach(), labels))
        mean_loss = torch.stack([loss for loss, _, _ in seen]).mean()
        bad, global_loss = self._global_loss(mean_loss)
        self.nonfinite.update(bad, self.step + 1)
        self.grad_norm = clip_gradients(self.model, self.optimizer, self.scaler, self.spec)
        if self.scaler.is_enabled():
            # The fp16 scaler finds inf/NaN gradients itself and skips those steps.
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif skips_on_device(self.optimizer):
            self.optimizer.found_inf = bad.float()  # type: ignore[attr-defined]
            self.optimizer.step()
        elif not bool(bad):  # an optimiser without the flag: one host read
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        keep = ~bad
        for loss, logits, labels in seen:
            meter.update(loss, logits, labels, keep=keep)
        self.step += 1
        if self.ema is not None and self.ema.due(self.step):
            self.ema.update(unwrap(self.model))
        return global_loss

    def check_nonfinite(self) -> None:
        """Read the non-finite counts (a host sync: call it where metrics are read anyway);
        raises `NonFiniteLossError` once the limit was exceeded."""
        epoch = self.progress.epoch if self.progress is not None else self.epoch + 1
        self.nonfinite.check(epoch, self._epoch_start_step(), self.placement.rank)

    def train_epoch(
        self,
        epoch: int,
        on_step: StepCallback | None = None,
        every: int = 10,
        on_metrics: StepCallback | None = None,
        boundary: StepBoundary | None = None,
    ) -> dict[str, float]:
        """Train epoch `epoch` (1-based; a collective), from its first step or from where a
        restored mid-epoch checkpoint left it. `on_step`, if given, receives a progress dict
        every `every` steps; `on_metrics` receives `StepMetrics`' report every
        `train.log_every_n_steps` global steps, on every rank; `boundary` is called after
        every optimiser step. The host reads the step's loss only for those reports and at the
        end of the epoch. Returns train_loss/top1/top5 error, lr, images_per_second,
        data_wait_seconds and compute_seconds.
        """
        self.model.train()
        saved, self.resume_position = self.resume_position, None
        if saved is not None and saved.epoch != epoch:
            saved = None
        micro = self.split.accumulation
        iterator = start_epoch(self.train_loader, epoch, micro, saved)
        meter, timing = EpochMeter(self.device), EpochTiming()
        done = 0
        if saved is not None:
            done = saved.steps_done
            if saved.meter is not None:
                meter.sums.copy_(saved.meter.to(meter.sums.device))
            timing.data_wait, timing.compute = saved.timing
        progress = EpochProgress(epoch, done, iterator, meter, timing)
        self.progress = progress
        timer = Throughput()
        global_batch = self.split.global_batch
        step_metrics = StepMetrics(
            self.spec.train, global_batch, self.step, self.placement.world_size
        )
        steps = min(self.steps_per_epoch, self.total_steps - (self.step - done))
        lr = self.lr()
        for i in range(done + 1, steps + 1):
            with timing.waiting():
                batch = [next(iterator) for _ in range(micro)]
            lr = self.lr()
            with timing.computing():
                loss = self.accumulated_step(batch, epoch, i, meter)
            progress.steps_done = i
            if on_metrics is not None and step_metrics.due(self.step):
                self.check_nonfinite()
                on_metrics(step_metrics.report(self.step, float(loss), lr, self.grad_norm))
            # The first step is reported too: it tells the driver when training really began.
            if on_step is not None and (i == done + 1 or i % every == 0 or i == steps):
                self.check_nonfinite()
                on_step(
                    {
                        "epoch": epoch,
                        "step": i,
                        "steps": steps,
                        "global_step": self.step,
                        "images_per_second": timer.images_per_second((i - done) * global_batch),
                        "loss": float(loss),
                        "lr": lr,
                    }
                )
            if boundary is not None:
                boundary(self, epoch, i, steps)
        close = getattr(iterator, "close", None)
        if callable(close):  # a partial last epoch: free the loader's pipeline now
            close()
        self.check_nonfinite()
        self.progress = None
        metrics = {**meter.compute("train"), **timing.metrics(), "lr": lr}
        metrics["images_per_second"] = timer.images_per_second((steps - done) * global_batch)
        return metrics

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Evaluate on this rank's validation shard and sum over the ranks (a collective).

        Uses the unwrapped model: shards may differ in length, and DDP's forward could
        otherwise start a collective on one rank only.
        """
        model = unwrap(self.model)
        broadcast_buffers(model, self.placement)
        metrics = self._evaluate(model, self.val_loader, self.ten_crop)
        if self.ema is not None:
            broadcast_buffers(self.ema.module, self.placement)
            ema = self._evaluate(self.ema.module, self.val_loader, self.ten_crop)
            metrics.update({f"{key}_ema": value for key, value in ema.items()})
        return metrics

    def _evaluate(self, model: nn.Module, loader: Loader, ten_crop: bool) -> dict[str, float]:
        return evaluate(model, loader, self.spec, self.device, self.val_criterion, ten_crop)

    def _ranked_model(self) -> nn.Module:
        """The weights `checkpoint.metric` ranks: the EMA's for a `*_ema` metric."""
        if self.ema is not None and self.spec.checkpoint.metric in EMA_METRICS:
            return self.ema.module
        return unwrap(self.model)

    def offer_best(self, epoch: int, metrics: dict[str, float]) -> None:
        """Note the checkpoint of `epoch` as a candidate for the final evaluation."""
        if self.best is not None:
            self.best.offer(epoch, metrics, self._ranked_model())

    def final_evaluation(self) -> dict[str, float]:
        """Evaluate the best checkpointed weights with `train.final_eval`'s protocol (a
        collective: each rank takes its shard of the validation set, sums are all-reduced).
        Returns `FINAL_EVAL_METRICS`, errors in percent like the per-epoch ones."""
        # A copy, so the live model keeps the last epoch's weights for its checkpoint.
        model = copy.deepcopy(self._ranked_model())
        epoch = self.epoch
        if self.best is not None and self.best.weights is not None and self.best.epoch:
            model.load_state_dict(self.best.weights)
            epoch = self.best.epoch
        # else no finite metric ranked a checkpoint: the final weights are all there is.
        metrics = self._evaluate(model, self._final_eval_loader(), ten_crop=True)
        result = {f"{key}_10crop": value for key, value in metrics.items()}
        result["final_eval_epoch"] = float(epoch)
        return result

    def _final_eval_loader(self) -> Loader:
        if self.final_eval_loader is None:
            from resnetctl.data import build_ten_crop_loader

            if self._layout is None:
                raise RuntimeError("injected loaders need an injected final_eval_loader")
            self.final_eval_loader = build_ten_crop_loader(
                self.spec.data, self._layout, **self._loader_options
            )
        return self.final_eval_loader

    def run_epoch(
        self,
        epoch: int,
        on_step: StepCallback | None = None,
        every: int = 10,
        on_metrics: StepCallback | None = None,
        boundary: StepBoundary | None = None,
    ) -> dict[str, float]:
        """Train and validate one epoch, update the plateau state, and return exactly the
        metrics of `EPOCH_METRICS` (a collective)."""
        timer = Throughput()
        metrics = self.train_epoch(
            epoch, on_step=on_step, every=every, on_metrics=on_metrics, boundary=boundary
        )
        metrics.update(self.validate())
        metrics["epoch_seconds"] = timer.seconds()
        self.schedule.on_epoch_end(metrics)
        self.epoch = epoch
        keys = EPOCH_METRICS + (EMA_METRICS if self.ema is not None else ())
        return {key: float(metrics[key]) for key in keys}

    # ------------------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, Any]:
        """The full training state (a collective: gathers every rank's RNG state)."""
        return training_state(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` output. RNG states are restored per rank when the world size
        is unchanged; otherwise each rank is reseeded from the seed, rank and epoch.

        A checkpoint of another number of workers is continued at the same epoch of the
        schedule (see `resume_step`), or refused with `ResizeError` when that is not exact.
        """
        restore_training_state(self, state)
