"""Where an epoch's training time goes: waiting for the input pipeline, or computing steps.

The number that tells a user whether DALI or the model is the bottleneck. Measured on each rank
around `next(loader)` and around the optimiser step; rank 0's figures are what tracking logs.
The step ends in a host sync (the all-reduced loss is read back every step), so on a GPU the
compute time is the device's too, not just the time to queue kernels. Validation is in neither.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The per-epoch metrics `EpochTiming.metrics` returns (seconds, this rank's wall time).
TIMING_METRICS: tuple[str, ...] = ("data_wait_seconds", "compute_seconds")


class EpochTiming:
    """Sums of wall time spent in `waiting()` and `computing()` blocks over one epoch."""

    def __init__(self) -> None:
        self.data_wait = 0.0
        self.compute = 0.0

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Time a block that waits for the next batch."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.data_wait += time.perf_counter() - start

    @contextmanager
    def computing(self) -> Iterator[None]:
        """Time a block that runs a training step."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.compute += time.perf_counter() - start

    def metrics(self) -> dict[str, float]:
        """`data_wait_seconds` and `compute_seconds` of the epoch so far."""
        return dict(zip(TIMING_METRICS, (self.data_wait, self.compute), strict=True))
