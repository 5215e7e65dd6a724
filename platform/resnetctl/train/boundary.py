"""What happens between two optimiser steps: checkpoints every N steps or M minutes, and the
reaction to a notice.

On a notice (a node of the run being drained, Ctrl-C, SIGTERM, `resnetctl stop`) every worker
checkpoints at the next step boundary. A drain goes on training after that; close to its
deadline (less the time the last checkpoint took to write and upload, and a margin) the run
checkpoints once more and stops stepping until Ray Train tears the group down and restarts it
elsewhere, so the steps redone after the restart are a handful at most. A stop request ends the
run right after its checkpoint.

Every rank must take the same decision at the same step, or a checkpoint (a collective) would
hang. What a rank can only know by itself (its clock, what its notice thread heard) is agreed
through `AgreedFlags`: an all-reduce of a few numbers on a CPU process group, started at one
boundary and read at the next, so nothing waits on it and nothing touches the device. Decisions
from those flags therefore come one step after the rank first saw them.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.distributed as dist

from resnetctl.spec import JobSpec
from resnetctl.train.notices import NoNotices, Notice
from resnetctl.train.placement import Placement

if TYPE_CHECKING:
    from resnetctl.train.runner import Runner

log = logging.getLogger(__name__)

#: After the last checkpoint before a deadline, how long past the deadline the workers wait to
#: be torn down before they go on training (a drain that was called off, a node that stayed).
HOLD_PAST_DEADLINE_S = 120.0


class StopTraining(Exception):  # noqa: N818 - a control-flow signal, not an error
    """The run was asked to stop and its checkpoint is written: every rank returns."""

    def __init__(self, step: int, reason: str) -> None:
        super().__init__(f"stopped after step {step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True)
class Agreed:
    """The flags all ranks agreed on."""

    time_due: bool = False
    preempted: bool = False
    stop: bool = False
    deadline: float | None = None  # the earliest deadline any rank heard of
    near_deadline: bool = False

    @staticmethod
    def encode(
        time_due: bool, notice: Notice, near_deadline: bool
    ) -> np.ndarray:  # MAX-reduced: booleans as 0/1, the deadline negated (earliest wins)
        deadline = -notice.deadline if notice.deadline is not None else -math.inf
        flags = (time_due, notice.preempted, notice.stop, deadline, near_deadline)
        return np.array([float(v) for v in flags], dtype=np.float64)

    @classmethod
    def decode(cls, values: np.ndarray) -> Agreed:
        time_due, preempted, stop, deadline, near = (float(v) for v in values)
        return cls(
            time_due=time_due > 0,
            preempted=preempted > 0,
            stop=stop > 0,
            deadline=-deadline if math.isfinite(deadline) else None,
            near_deadline=near > 0,
        )


class AgreedFlags:
    """A MAX all-reduce of each rank's flags on a gloo group of its own, asynchronous: what one
    boundary starts, the next one collects (see the module's docstring)."""

    def __init__(self, placement: Placement) -> None:
        self.distributed = placement.distributed and dist.is_available() and dist.is_initialized()
        # CPU tensors whatever the training backend: NCCL reduces device tensors only, and
        # these are host values that must never wait on the device.
        self.group = dist.new_group(backend="gloo") if self.distributed else None
        self._pending: tuple[Any, torch.Tensor] | None = None

    def collect(self) -> Agreed | None:
        """The agreement started by the previous `start` (None before the first)."""
        if self._pending is None:
            return None
        work, tensor = self._pending
        self._pending = None
        work.wait()
        return Agreed.decode(tensor.numpy())

    def start(self, local: np.ndarray) -> None:
        """Start agreeing on this rank's `local` flags."""
        tensor = torch.from_numpy(local.copy())
        work = dist.all_reduce(tensor, op=dist.ReduceOp.MAX, group=self.group, async_op=True)
        self._pending = (work, tensor)


@dataclass(frozen=True)
class CheckpointCause:
    """Why a checkpoint is written between two steps."""

    reason: str
    notice: bool = False  # a new preemption notice
    urgent: bool = False  # a notice, the last one before a deadline, or a stop request


#: Writes a checkpoint of the runner's state (a collective) for the given cause; returns the
#: seconds it took on this rank.
CheckpointWriter = Callable[["Runner", CheckpointCause], float]


class StepCheckpoints:
    """The `StepBoundary` of a run: checkpoints every `checkpoint.every_n_steps` steps and
    every `checkpoint.every_minutes`, and on notices (see the module's docstring)."""

    def __init__(
        self,
        spec: JobSpec,
        placement: Placement,
        write: CheckpointWriter,
        *,
        notices: Any = None,
        epoch_end_checkpoint: Callable[[int], bool] = lambda epoch: False,
        upload_seconds: Callable[[], float] = lambda: 0.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.every_steps = spec.checkpoint.every_n_steps
        minutes = spec.checkpoint.every_minutes
        self.every_seconds = None if minutes is None else minutes * 60.0
        self.margin = spec.failure.notice_margin_s
        self.rank = placement.rank
        self.write = write
        self.notices = notices or NoNotices()
        self.epoch_end_checkpoint = epoch_end_checkpoint
        self.upload_seconds = upload_seconds
        self.clock = clock
        self.sleep = sleep
        self.flags = AgreedFlags(placement)
        self.last_checkpoint_at = clock()
        self.last_checkpoint_seconds = 0.0
        self.noticed = False  # a drain was agreed on and checkpointed for
        self.final_written = False  # the last checkpoint before the deadline is written
        self.checkpoints: list[tuple[int, str]] = []  # (global step, reason), for tests and logs

    def _local(self) -> np.ndarray:
        now = self.clock()
        notice = self.notices.current()
        time_due = self.every_seconds is not None and (
            now - self.last_checkpoint_at >= self.every_seconds
        )
        # The time the last checkpoint took to write here and, on rank 0, to upload.
        needed = self.last_checkpoint_seconds + self.upload_seconds() + self.margin
        near = notice.deadline is not None and now >= notice.deadline - needed
        return Agreed.encode(time_due, notice, near)

    def __call__(self, runner: Runner, epoch: int, steps_done: int, steps: int) -> None:
        if self.flags.distributed:
            agreed = self.flags.collect() or Agreed()
        else:  # one process: its own flags are the agreement, at once
            agreed = Agreed.decode(self._local())
        self._decide(runner, agreed, epoch, steps_done, steps)
        if self.flags.distributed:
            # After the decision: flags raised before a checkpoint must not ask for another.
            self.flags.start(self._local())

    def _decide(
        self, runner: Runner, agreed: Agreed, epoch: int, steps_done: int, steps: int
    ) -> None:
        reasons = []
        if self.every_steps is not None and runner.step % self.every_steps == 0:
            reasons.append(f"every {self.every_steps} steps")
        if agreed.time_due:
            reasons.append(f"every {self.every_seconds / 60:g} minutes")  # type: ignore[operator]
        first_notice = agreed.preempted and not self.noticed
        if first_notice:
            self.noticed = True
            reasons.append(self._describe_drain(agreed))
        final = agreed.near_deadline and not self.final_written
        if final:
            reasons.append("the drain's deadline is near: last checkpoint before it")
        if agreed.stop:
            reasons.append("the run was asked to stop")
        if not reasons:
            return
        urgent = first_notice or final or agreed.stop
        if not urgent and steps_done == steps and self.epoch_end_checkpoint(epoch):
            return  # the epoch's own checkpoint follows its validation
        reason = "; ".join(reasons)
        seconds = self.write(runner, CheckpointCause(reason, first_notice, urgent))
        self.checkpoints.append((runner.step, reason))
        self.last_checkpoint_at = self.clock()
        self.last_checkpoint_seconds = seconds
        if agreed.stop:
            raise StopTraining(runner.step, self.notices.current().reason or "stop requested")
        if final:
            self.final_written = True
            self._hold(agreed.deadline)

    def _describe_drain(self, agreed: Agreed) -> str:
        notice = self.notices.current()
        text = notice.reason or "a node of the run is being drained"
        if agreed.deadline is not None:
            text += f", deadline in {agreed.deadline - self.clock():.0f} s"
        return f"notice: {text}"

    def _hold(self, deadline: float | None) -> None:
        """Stop stepping until Ray Train tears the group down at the deadline; go on training
        if that has not happened well after it."""
        if self.rank == 0:
            log.warning(
                "checkpoint written before the drain's deadline: waiting for the node to go "
                "(the run restarts from this checkpoint)"
            )
        until = (deadline if deadline is not None else self.clock()) + HOLD_PAST_DEADLINE_S
        while self.clock() < until:
            self.sleep(1.0)
        if self.rank == 0:
            log.warning("the drained node did not go: training goes on")
        self.noticed = False
        self.final_written = False
