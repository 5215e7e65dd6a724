"""An epoch's training time split into waiting for batches and computing steps."""

from __future__ import annotations

import time

import pytest

from resnetctl.train.timing import TIMING_METRICS, EpochTiming


def test_waiting_and_computing_are_summed_apart() -> None:
    timing = EpochTiming()
    for _ in range(2):
        with timing.waiting():
            time.sleep(0.02)
        with timing.computing():
            time.sleep(0.05)
    metrics = timing.metrics()
    assert tuple(metrics) == TIMING_METRICS
    assert metrics["data_wait_seconds"] == pytest.approx(0.04, abs=0.03)
    assert metrics["compute_seconds"] == pytest.approx(0.10, abs=0.04)
    assert metrics["compute_seconds"] > metrics["data_wait_seconds"]


def test_a_failing_block_is_still_timed() -> None:
    timing = EpochTiming()
    with pytest.raises(StopIteration), timing.waiting():
        time.sleep(0.01)
        raise StopIteration
    assert timing.data_wait > 0 and timing.compute == 0
