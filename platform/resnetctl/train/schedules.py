"""Learning-rate schedules: the rate is a pure function of the global step and, for the plateau
schedule, of state updated once per epoch from the epoch's metrics.

Keeping the rate a function of the step (instead of stepping a stateful scheduler) is what makes
resume exact: after loading a checkpoint of the same world size, the rate at step `s` is the
rate an uninterrupted run would have used. Steps per epoch (and so every length in epochs) depend
on the world size; a checkpoint of another world size is mapped to the same epoch or refused by
`resnetctl.train.resize`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from resnetctl.spec.metrics import default_mode
from resnetctl.spec.steps import to_steps, total_steps
from resnetctl.spec.train import (
    ConstantSchedule,
    CosineSchedule,
    PlateauSchedule,
    StepSchedule,
    TrainSpec,
    WarmupSpec,
)


@dataclass(frozen=True)
class RunLength:
    """The step arithmetic a schedule needs: steps per epoch and the run's total steps."""

    steps_per_epoch: int
    total_steps: int

    def to_steps(self, length: int, unit: str) -> int:
        """Convert a length in epochs or iterations to iterations."""
        return to_steps(length, unit, self.steps_per_epoch)


class LRSchedule:
    """Base schedule: `lr(step)` is the rate of the optimiser step with 0-based index `step`."""

    kind: str = ""

    def __init__(self, spec: Any, peak_lr: float, run: RunLength) -> None:
        self.spec = spec
        self.peak_lr = peak_lr
        self.run = run

    def lr(self, step: int) -> float:
        """The learning rate at global step `step` (0-based)."""
        raise NotImplementedError

    def on_epoch_end(self, metrics: Mapping[str, float]) -> None:
        """Take the finished epoch's metrics into account (only the plateau schedule does)."""

    def state_dict(self) -> dict[str, Any]:
        """State beyond the step; empty for schedules that are pure functions of the step."""
        return {"kind": self.kind}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict` returned."""
        if state.get("kind", self.kind) != self.kind:
            raise ValueError(
                f"checkpoint holds a {state.get('kind')!r} schedule, "
                f"the spec asks for {self.kind!r}"
            )


SCHEDULES: dict[str, type[LRSchedule]] = {}


def register_schedule(kind: str) -> Callable[[type[LRSchedule]], type[LRSchedule]]:
    """Class decorator: make a schedule buildable from a spec section with `kind: <kind>`."""

    def add(cls: type[LRSchedule]) -> type[LRSchedule]:
        cls.kind = kind
        SCHEDULES[kind] = cls
        return cls

    return add


@register_schedule("constant")
class Constant(LRSchedule):
    """The peak rate throughout."""

    spec: ConstantSchedule

    def lr(self, step: int) -> float:
        return self.peak_lr


@register_schedule("step")
class Step(LRSchedule):
    """Multiply by gamma once the run has completed each milestone (epochs or iterations)."""

    spec: StepSchedule

    def __init__(self, spec: StepSchedule, peak_lr: float, run: RunLength) -> None:
        super().__init__(spec, peak_lr, run)
        self.milestone_steps = [run.to_steps(m, spec.unit) for m in spec.milestones]

    def lr(self, step: int) -> float:
        passed = sum(step >= m for m in self.milestone_steps)
        return self.peak_lr * self.spec.gamma**passed


@register_schedule("cosine")
class Cosine(LRSchedule):
    """Half a cosine from the peak rate (after warm-up) down to min_lr at the end of the run."""

    spec: CosineSchedule

    def __init__(
        self, spec: CosineSchedule, peak_lr: float, run: RunLength, start_step: int = 0
    ) -> None:
        super().__init__(spec, peak_lr, run)
        self.start_step = start_step

    def lr(self, step: int) -> float:
        span = max(1, self.run.total_steps - self.start_step)
        progress = min(1.0, max(0.0, (step - self.start_step) / span))
        low = self.spec.min_lr
        return low + (self.peak_lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


@register_schedule("plateau")
class Plateau(LRSchedule):
    """Multiply by `factor` when the watched metric, averaged over the last `window` epochs, has
    not improved for more than `patience` epochs (patience 0 reacts to the first bad epoch, as
    torch's ReduceLROnPlateau); then ignore `cooldown` epochs, and stop after `max_drops`."""

    spec: PlateauSchedule

    def __init__(self, spec: PlateauSchedule, peak_lr: float, run: RunLength) -> None:
        super().__init__(spec, peak_lr, run)
        self.mode = default_mode(spec.metric)
        self.best: float | None = None
        self.bad_epochs = 0
        self.scale = 1.0
        self.history: list[float] = []
        self.cooldown_left = 0
        self.drops = 0

    def lr(self, step: int) -> float:
        return max(self.spec.min_lr, self.peak_lr * self.scale)

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        margin = abs(self.best) * self.spec.threshold
        if self.mode == "min":
            return value < self.best - margin
        return value > self.best + margin

    def on_epoch_end(self, metrics: Mapping[str, float]) -> None:
        value = metrics.get(self.spec.metric)
        if value is None or not math.isfinite(value):
            # A missing or NaN metric is not evidence of a plateau.
            return
        self.history = [*self.history, float(value)][-self.spec.window :]
        if len(self.history) < self.spec.window:
            # The mean of a partial window is biased by the first, worst epochs.
            return
        smoothed = sum(self.history) / len(self.history)
        if self._improved(smoothed):
            self.best = smoothed
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
            return
        exhausted = self.spec.max_drops is not None and self.drops >= self.spec.max_drops
        if self.bad_epochs > self.spec.patience and not exhausted:
            self.scale *= self.spec.factor
            self.drops += 1
            self.bad_epochs = 0
            self.cooldown_left = self.spec.cooldown

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "best": self.best,
            "bad_epochs": self.bad_epochs,
            "scale": self.scale,
            "history": list(self.history),
            "cooldown_left": self.cooldown_left,
            "drops": self.drops,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self.best = None if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        self.scale = float(state["scale"])
        # Checkpoints written before smoothing and cooldown existed lack these.
        self.history = [float(v) for v in state.get("history", [])]
        self.cooldown_left = int(state.get("cooldown_left", 0))
        default_drops = round(math.log(self.scale) / math.log(self.spec.factor))
        self.drops = int(state.get("drops", default_drops))


class Warmup(LRSchedule):
    """Warm-up composed on top of any schedule: for the first `length` steps the inner rate is
    multiplied by a factor that is either held at `start_factor` (the paper's ResNet-110 recipe)
    or ramped linearly from `start_factor` to 1."""

    def __init__(self, inner: LRSchedule, warmup: WarmupSpec, run: RunLength) -> None:
        super().__init__(warmup, inner.peak_lr, run)
        self.inner = inner
        self.kind = inner.kind
        self.steps = run.to_steps(warmup.length, warmup.unit)

    def factor(self, step: int) -> float:
        """The multiplier warm-up applies at `step`."""
        if step >= self.steps:
            return 1.0
        start = self.spec.start_factor
        if self.spec.mode == "constant":
            return start
        return start + (1.0 - start) * step / self.steps

    def lr(self, step: int) -> float:
        return self.inner.lr(step) * self.factor(step)

    def on_epoch_end(self, metrics: Mapping[str, float]) -> None:
        self.inner.on_epoch_end(metrics)

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.inner.load_state_dict(state)


def build_schedule(train: TrainSpec, peak_lr: float, steps_per_epoch: int) -> LRSchedule:
    """The schedule of a run: the registered `train.schedule.kind`, with warm-up on top.

    `peak_lr` is the rate after linear scaling (`train.scaled_lr(workers)`).
    """
    total = total_steps(train, steps_per_epoch)
    run = RunLength(steps_per_epoch=steps_per_epoch, total_steps=total)
    cls = SCHEDULES[train.schedule.kind]
    warmup_steps = run.to_steps(train.warmup.length, train.warmup.unit)
    if cls is Cosine:
        # The cosine starts after warm-up so the decay still spans the rest of the run.
        schedule: LRSchedule = Cosine(train.schedule, peak_lr, run, start_step=warmup_steps)
    else:
        schedule = cls(train.schedule, peak_lr, run)
    if warmup_steps > 0:
        schedule = Warmup(schedule, train.warmup, run)
    return schedule
