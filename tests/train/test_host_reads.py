"""The training step keeps its numbers on the device: between two logging points the host reads
nothing (no `.item()`, `.tolist()`, `float(t)`, `bool(t)`, ...), so a GPU step never waits for
the device to drain. Counted on CPU, where the same calls are the ones that would sync a GPU."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import pytest
import torch

from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import batches, job_spec, tiny_model

#: The Tensor methods through which Python reads a tensor's values on the host.
READS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


@contextmanager
def counted_reads() -> Iterator[list[str]]:
    """Count every host read of a tensor while the block runs."""
    seen: list[str] = []
    originals = {name: getattr(torch.Tensor, name) for name in READS}

    def counting(name: str, original: Any) -> Any:
        def read(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            return original(self, *args, **kwargs)

        return read

    for name, original in originals.items():
        setattr(torch.Tensor, name, counting(name, original))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


def _runner(**train: Any) -> Runner:
    spec = job_spec(train={"epochs": 1, **train})
    torch.manual_seed(0)
    return Runner(
        spec, Placement(), model=tiny_model(), train_loader=batches(8), val_loader=batches(2)
    )


@pytest.mark.parametrize(
    "train",
    [{}, {"accumulation_steps": 2, "batch_size_per_worker": 4}, {"ema": {"decay": 0.9}}],
    ids=["plain", "accumulation", "ema"],
)
def test_no_host_read_between_logging_points(train: dict[str, Any]) -> None:
    runner = _runner(**train)
    after_step: list[int] = []
    with counted_reads() as seen:
        runner.train_epoch(1, boundary=lambda *_: after_step.append(len(seen)))
    steps = len(after_step)
    assert steps >= 3
    # Nothing read from the second step's end to the last step's end; the epoch's end reads.
    between = [b - a for a, b in pairwise(after_step)]
    assert between == [0] * (steps - 1), (between, seen)
    assert len(seen) > after_step[-1]


def test_the_counter_sees_a_host_read() -> None:
    """The check above could fail: a read inside a step is counted."""
    with counted_reads() as seen:
        float(torch.ones(()))
        torch.ones(2).tolist()
        bool(torch.ones(()) > 0)
    assert seen == ["__float__", "tolist", "__bool__"]


def test_step_metrics_are_read_only_at_their_interval() -> None:
    runner = _runner(log_every_n_steps=4)
    reads_at: list[int] = []
    after_step: list[int] = []
    with counted_reads() as seen:
        runner.train_epoch(
            1,
            on_metrics=lambda report: reads_at.append(report["global_step"]),
            boundary=lambda *_: after_step.append(len(seen)),
        )
    assert reads_at == [4, 8]
    between = [b - a for a, b in pairwise(after_step)]
    # Steps 2, 3 and 5, 6, 7 read nothing; steps 4 and 8 read the reported numbers.
    assert [i + 2 for i, n in enumerate(between) if n] == [4, 8], between
