"""Top-k error on hand-made logits, and sums over two gloo processes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from resnetctl.train.metrics import EpochMeter, topk_correct
from tests.train._dist import run_distributed


def _logits() -> tuple[torch.Tensor, torch.Tensor]:
    # 6 classes; the target's rank among the logits is 1, 2, 6 and 5 for the four samples.
    logits = torch.tensor(
        [
            [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # target 0: top-1
            [1.0, 9.0, 8.0, 3.0, 4.0, 5.0],  # target 2: second, so top-5 only
            [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # target 5: last, wrong for both
            [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],  # target 4: fifth, top-5 only
        ]
    )
    return logits, torch.tensor([0, 2, 5, 4])


def test_topk_correct_on_hand_made_logits() -> None:
    logits, targets = _logits()
    assert topk_correct(logits, targets).tolist() == [1.0, 3.0]


def test_topk_with_fewer_classes_than_k_counts_everything_as_top5() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2]])
    assert topk_correct(logits, torch.tensor([0, 0])).tolist() == [1.0, 2.0]


def test_epoch_meter_errors_in_percent_and_loss_weighted_by_samples() -> None:
    logits, targets = _logits()
    meter = EpochMeter()
    meter.update(torch.tensor(2.0), logits[:3], targets[:3])
    meter.update(torch.tensor(4.0), logits[3:], targets[3:])
    result = meter.compute("val")
    assert result["val_top1_error"] == pytest.approx(75.0)
    assert result["val_top5_error"] == pytest.approx(25.0)
    assert result["val_loss"] == pytest.approx((2.0 * 3 + 4.0 * 1) / 4)
    assert meter.global_samples == 4


def test_empty_meter_reports_nan_not_zero_error() -> None:
    result = EpochMeter().compute("train")
    assert all(v != v for v in result.values())


def _shard_metrics(rank: int, world: int) -> dict[str, float]:
    logits, targets = _logits()
    meter = EpochMeter()
    # Uneven shards: rank 0 gets 3 samples, rank 1 gets 1.
    part = slice(0, 3) if rank == 0 else slice(3, 4)
    meter.update(torch.tensor(2.0 if rank == 0 else 4.0), logits[part], targets[part])
    return meter.compute("val")


def test_sums_over_two_gloo_processes_equal_the_single_process_result(tmp_path: Path) -> None:
    logits, targets = _logits()
    single = EpochMeter()
    single.update(torch.tensor(2.0), logits[:3], targets[:3])
    single.update(torch.tensor(4.0), logits[3:], targets[3:])
    expected = single.compute("val")
    results = run_distributed(_shard_metrics, 2, tmp_path)
    for result in results:
        assert result == pytest.approx(expected)
    # Rank 0 alone would say 66.7% top-1 error: the sum really crossed processes.
    assert results[0]["val_top1_error"] != pytest.approx(200 / 3)
