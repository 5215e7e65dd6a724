"""Non-finite losses, tracked on the device: a step whose loss is not finite on some rank is
skipped on every rank without the host reading anything, and the host looks at the count only
where it reads metrics anyway (a progress or step-metrics report, the end of an epoch).

Reading a flag every step would stall a GPU's queue once per step (the host waits for the
backward pass and the all-reduce before it can queue the next step's kernels). Instead the
flag goes to the optimiser as `found_inf`, which fused optimisers (and the fp16 grad scaler)
take on the device: the update, momentum included, is skipped in the kernel.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised on every rank when the loss stayed non-finite for too many consecutive steps,
    or when the validation loss is not finite (a checkpoint of such weights is worthless)."""

    def __init__(
        self, epoch: int, step: int, global_step: int, streak: int, limit: int, what: str = "loss"
    ) -> None:
        self.epoch = epoch
        self.step = step
        self.global_step = global_step
        self.streak = streak
        self.limit = limit
        self.what = what
        if what == "loss":
            detail = (
                f"non-finite loss at epoch {epoch}, step {step} (global step {global_step}): "
                f"{streak} consecutive non-finite losses, train.max_nonfinite_steps is {limit}."
            )
        else:
            detail = f"non-finite {what} at epoch {epoch} (global step {global_step})."
        super().__init__(f"{detail} Lower train.base_lr, add warm-up, or use fp32.")

    def __reduce__(self) -> tuple[object, ...]:
        # Ray ships worker exceptions to the controller by pickling; keep the arguments.
        args = (self.epoch, self.step, self.global_step, self.streak, self.limit, self.what)
        return (type(self), args)


class NonFiniteTracker:
    """Consecutive non-finite steps, on the device. The same on every rank: it is fed the
    all-reduced flag."""

    def __init__(self, limit: int, device: torch.device) -> None:
        self.limit = limit
        # [current streak, steps skipped since the last check, first global step whose streak
        # went over the limit (0: none)]
        self.counts = torch.zeros(3, dtype=torch.int64, device=device)

    def update(self, bad: torch.Tensor, global_step: int) -> None:
        """Record whether global step `global_step` (1-based) had a non-finite loss."""
        streak, skipped, first = self.counts.unbind()
        bad = bad.to(torch.int64)
        streak = (streak + 1) * bad
        over = (streak > self.limit) & (first == 0)
        first = torch.where(over, torch.full_like(first, global_step), first)
        self.counts = torch.stack([streak, skipped + bad, first])

    def check(self, epoch: int, epoch_start_step: int, rank: int = 0) -> None:
        """Read the counts (one host sync): warn about skipped steps, raise
        `NonFiniteLossError` naming the step at which the limit was exceeded."""
        streak, skipped, first = (int(v) for v in self.counts.tolist())
        if first:
            raise NonFiniteLossError(
                epoch, first - epoch_start_step, first, self.limit + 1, self.limit
            )
        if skipped:
            if rank == 0:
                log.warning(
                    "non-finite loss in %d step(s) of epoch %d: those steps were skipped",
                    skipped,
                    epoch,
                )
            self.counts[1].zero_()

    def state_dict(self) -> list[int]:
        """The counts, for a checkpoint (a host read: checkpoints are rare)."""
        return [int(v) for v in self.counts.tolist()]

    def load_state_dict(self, counts: list[int]) -> None:
        """Inverse of `state_dict`."""
        self.counts = torch.tensor(counts, dtype=torch.int64, device=self.counts.device)
