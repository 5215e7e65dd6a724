"""Where a worker stands inside an epoch, and putting it back there: what a checkpoint written
between two optimiser steps adds to the epoch-end training state.

Each rank's part is its own: the input pipeline's state after the batches it handed out (DALI's
pipeline checkpoint: reader position, shuffle buffer, the random operators' states), the sums of
the epoch's running train meters (so the epoch's logged train error is the uninterrupted one)
and its timing sums. Loaders without a pipeline state (the in-memory lists tests inject) are put
back by drawing the batches already trained on again, which replays them exactly when the
loader is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from resnetctl.train.metrics import EpochMeter
from resnetctl.train.timing import EpochTiming


@dataclass
class EpochProgress:
    """The epoch being trained, live: what a checkpoint between two steps must capture."""

    epoch: int  # 1-based
    steps_done: int  # optimiser steps of this epoch taken so far
    iterator: Iterator[Any]
    meter: EpochMeter
    timing: EpochTiming = field(default_factory=EpochTiming)

    def rank_state(self) -> dict[str, Any]:
        """This rank's part of a mid-epoch checkpoint (tensors and plain values only)."""
        capture = getattr(self.iterator, "checkpoint", None)
        data = None
        if callable(capture):
            data = torch.frombuffer(bytearray(capture()), dtype=torch.uint8).clone()
        return {
            "data": data,
            "meter": self.meter.sums.detach().cpu().clone(),
            "timing": [self.timing.data_wait, self.timing.compute],
        }


@dataclass(frozen=True)
class SavedPosition:
    """A mid-epoch position read back from a checkpoint, for one rank."""

    epoch: int
    steps_done: int
    data: bytes | None
    meter: torch.Tensor | None
    timing: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def of(cls, position: dict[str, Any], rank_state: dict[str, Any] | None) -> SavedPosition:
        """From a checkpoint's `position` and this rank's entry of its `ranks`."""
        rank_state = rank_state or {}
        data = rank_state.get("data")
        timing = rank_state.get("timing") or (0.0, 0.0)
        return cls(
            epoch=int(position["epoch"]),
            steps_done=int(position["steps_done"]),
            data=None if data is None else bytes(data.numpy().tobytes()),
            meter=rank_state.get("meter"),
            timing=(float(timing[0]), float(timing[1])),
        )


def start_epoch(
    loader: Any, epoch: int, micro_batches: int, saved: SavedPosition | None
) -> Iterator[Any]:
    """The iterator over epoch `epoch` (1-based) of `loader`, positioned after `saved`'s
    steps when it is that epoch's position. The loader's shuffle and augmentation depend on the
    0-based epoch alone, so a resumed run sees the batches an uninterrupted run would have."""
    done = saved.steps_done if saved is not None and saved.epoch == epoch else 0
    resume_epoch = getattr(loader, "resume_epoch", None)
    if done and saved is not None and saved.data is not None and callable(resume_epoch):
        resume_epoch(epoch - 1, saved.data, done * micro_batches)
        return iter(loader)
    set_epoch = getattr(loader, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch - 1)
    iterator = iter(loader)
    for _ in range(done * micro_batches):  # no pipeline state: replay what was trained on
        next(iterator)
    return iterator
