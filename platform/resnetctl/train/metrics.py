"""Epoch metrics: loss and top-1/top-5 error summed over the ranks, plus throughput.

Counts are kept as sums on the device (no host sync per step) and all-reduced once at the end
of the epoch, so the reported numbers are over the whole global batch stream, not rank 0's shard.
Errors are in percent, as in the paper's tables.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.distributed as dist

from resnetctl.spec.metrics import STEP_REPORT_KEY

TOPK = (1, 5)


def topk_correct(
    logits: torch.Tensor, targets: torch.Tensor, ks: tuple[int, ...] = TOPK
) -> torch.Tensor:
    """Number of samples whose target is among the top-k logits, for each k in `ks`.

    A k larger than the number of classes counts every sample as correct.
    """
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hits = top.eq(targets.view(-1, 1))
    return torch.stack([hits[:, : min(k, maxk)].any(dim=1).sum() for k in ks]).to(torch.float64)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over the ranks in place when torch.distributed is initialised."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class EpochMeter:
    """Accumulates loss, top-1 and top-5 error over an epoch, on `device`."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        # [loss sum, top-1 correct, top-5 correct, samples]; float64 keeps large sums exact.
        self.sums = torch.zeros(4, dtype=torch.float64, device=device)
        self.global_samples = 0.0

    def update(
        self,
        loss: torch.Tensor,
        logits: torch.Tensor,
        targets: torch.Tensor,
        keep: torch.Tensor | None = None,
    ) -> None:
        """Add one batch; `loss` is the batch mean. `keep`, a boolean on the device, leaves
        the batch out when false (a skipped step) without the host reading it."""
        n = targets.shape[0]
        correct = topk_correct(logits.detach(), targets)
        count = torch.tensor(float(n), dtype=torch.float64, device=correct.device)
        batch = torch.stack([loss.detach().to(torch.float64) * n, correct[0], correct[1], count])
        if keep is not None:
            batch = torch.where(keep, batch, torch.zeros_like(batch))
        self.sums += batch.to(self.sums.device)

    def compute(self, prefix: str) -> dict[str, float]:
        """All-reduce the sums (a collective: every rank must call it) and return
        `{prefix}_loss`, `{prefix}_top1_error`, `{prefix}_top5_error`; the number of samples
        over all ranks is left in `global_samples`."""
        sums = all_reduce_sum(self.sums.clone()).tolist()
        loss_sum, top1, top5, count = sums
        self.global_samples = count
        if count == 0:
            nan = float("nan")
            return {f"{prefix}_loss": nan, f"{prefix}_top1_error": nan, f"{prefix}_top5_error": nan}
        return {
            f"{prefix}_loss": loss_sum / count,
            f"{prefix}_top1_error": 100.0 * (1.0 - top1 / count),
            f"{prefix}_top5_error": 100.0 * (1.0 - top5 / count),
        }


class Throughput:
    """Wall time of a phase and images per second over all ranks."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        """Seconds since construction."""
        return time.perf_counter() - self.start

    def images_per_second(self, global_images: float) -> float:
        """Images over all ranks divided by this rank's wall time."""
        elapsed = self.seconds()
        return global_images / elapsed if elapsed > 0 else 0.0


class StepMetrics:
    """The per-step report of `train.log_every_n_steps`: due when the global step is a multiple
    of N, so every rank decides alike (a report is a collective under Ray Train) and a resumed
    run reports at the same steps as an uninterrupted one."""

    def __init__(self, train: Any, global_batch: int, step: int, workers: int = 1) -> None:
        self.every: int | None = train.log_every_n_steps
        self.global_batch = global_batch
        self.workers = workers
        self.since_step = step
        self.timer = Throughput()

    def due(self, step: int) -> bool:
        """Whether global step `step` (1-based count of steps taken) is reported."""
        return self.every is not None and step % self.every == 0

    def report(
        self, step: int, loss: float, lr: float, grad_norm: torch.Tensor | None
    ) -> dict[str, Any]:
        """The step report, throughput over the steps since the previous one; restarts that
        window."""
        images = (step - self.since_step) * self.global_batch
        metrics: dict[str, Any] = {
            STEP_REPORT_KEY: step,
            "step_train_loss": loss,
            "step_lr": lr,
            "step_images_per_second": self.timer.images_per_second(images),
            # What an elastic run trains with at this step: the worker count and images per
            # optimiser step, beside the rate.
            "workers": self.workers,
            "step_global_batch": self.global_batch,
        }
        if grad_norm is not None:
            metrics["step_grad_norm"] = float(grad_norm)
        self.since_step, self.timer = step, Throughput()
        return metrics
