"""A run stopped in the middle of an epoch and resumed from its step checkpoint trains exactly
what the undisturbed run trains: the same per-step losses, the same epoch metrics, the same
final weights. Real DALI loaders on generated JPEGs, one process (the two-rank case is in
test_exact_resume_ddp.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from resnetctl.spec import JobSpec
from resnetctl.train.checkpoint import read_meta
from resnetctl.train.loop import run_training
from resnetctl.train.notices import Notice
from resnetctl.train.runner import Placement, Runner
from tests.train._helpers import FakeSession, job_spec

EPOCHS, STEPS_PER_EPOCH = 3, 6


def _spec(**checkpoint: Any) -> JobSpec:
    data = {
        "source": {
            "kind": "synthetic",
            "num_classes": 4,
            "train_per_class": 12,  # 48 images, batch 8: 6 steps an epoch
            "val_per_class": 2,
            "image_size": [20, 20],
            "seed": 5,
        },
        "pipeline": {"kind": "cifar", "crop": 16, "pad": 2, "flip": True},
        "threads": 1,
    }
    return job_spec(
        train={
            "epochs": EPOCHS,
            "log_every_n_steps": 1,
            "schedule": {"kind": "cosine"},
            "mix": {"mixup_alpha": 0.2},  # torch's RNG is part of what must come back
        },
        data=data,
        checkpoint={"every_n_steps": 4, **checkpoint},
    )


class StopAt:
    """A ledger (rank 0's record of finished steps and their metrics) and a notice source in
    one: asks the run to stop once global step `step` is done, as the driver's Ctrl-C does."""

    def __init__(self, step: int) -> None:
        self.step, self.done = step, 0
        self.reports: list[dict[str, Any]] = []

    def add_metrics(self, metrics: dict[str, Any]) -> None:
        self.reports.append(metrics)

    def step_done(self, step: int) -> None:
        self.done = step

    def restored(self, step: int) -> dict[str, Any]:
        return {"steps_redone": 0, "seconds_since_last_step": None}

    def current(self) -> Notice:
        return Notice(stop=self.done >= self.step, reason="asked to stop")

    def close(self) -> None:
        pass


def _train(
    spec: JobSpec, tmp: Path, resume_from: Path | None = None, stop: StopAt | None = None
) -> tuple[FakeSession, Runner]:
    runner = Runner(spec, Placement())
    session = FakeSession(tmp, resume_from=resume_from)
    run_training(spec, Placement(), session, runner=runner, notices=stop, ledger=stop)
    return session, runner


def _losses(session: FakeSession, ledger: StopAt | None = None) -> dict[int, float]:
    """Per-step losses: reported through the session, or with a ledger sent to it instead."""
    reports = [m for m, _, _ in session.reports] + (ledger.reports if ledger else [])
    return {int(m["global_step"]): m["step_train_loss"] for m in reports if "global_step" in m}


def test_a_run_stopped_mid_epoch_resumes_to_the_undisturbed_runs_losses_and_weights(
    tmp_path: Path,
) -> None:
    spec = _spec()
    whole, reference = _train(spec, tmp_path / "whole")
    total = EPOCHS * STEPS_PER_EPOCH
    assert sorted(_losses(whole)) == list(range(1, total + 1))

    stopped, first = _train(spec, tmp_path / "stopped", stop=StopAt(9))  # step 3 of epoch 2
    assert first.step == 9 and [m["epoch"] for m, _, _ in stopped.epoch_reports] == [1]
    last = stopped.checkpoints[-1]
    meta = read_meta(last)
    assert (meta["step"], meta["epoch"], meta["position"]) == (9, 1, {"epoch": 2, "steps_done": 3})
    # Every 4 steps (step 4), the end of epoch 1 (step 6; step 8 was due too), and the stop.
    assert [p.name for p in stopped.checkpoints] == [
        "epoch_0001_step_000000004",
        "epoch_0001",
        "epoch_0002_step_000000008",
        "epoch_0002_step_000000009",
    ]

    resumed, again = _train(spec, tmp_path / "resumed", resume_from=last)
    # Without a ledger the steps' metrics go through the session, as under a bare host.
    assert resumed.reports[0][0]["restored_step"] == 9
    after = _losses(resumed)
    assert sorted(after) == list(range(10, total + 1))
    # The same batches, augmentation draws, mixup draws and weights: bit-equal losses.
    assert after == {s: v for s, v in _losses(whole).items() if s > 9}
    # Epoch 2's train error counts its first three steps too, as the undisturbed run's does.
    epochs = {m["epoch"]: m for m, _, _ in whole.epoch_reports}
    for m, _, _ in resumed.epoch_reports:
        for key in ("train_loss", "train_top1_error", "val_loss", "val_top1_error", "lr"):
            assert m[key] == epochs[m["epoch"]][key], (m["epoch"], key)
    for (name, a), b in zip(
        reference.model.state_dict().items(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_injected_loaders_are_replayed_up_to_the_checkpoint(tmp_path: Path) -> None:
    from tests.train._helpers import batches, tiny_model

    spec = job_spec(train={"epochs": 2, "log_every_n_steps": 1}, checkpoint={"every_n_steps": 2})

    def train(tmp: Path, resume_from: Path | None = None, stop: StopAt | None = None) -> Any:
        torch.manual_seed(0)
        runner = Runner(spec, model=tiny_model(), train_loader=batches(5), val_loader=batches(1))
        session = FakeSession(tmp, resume_from=resume_from)
        run_training(spec, Placement(), session, runner=runner, notices=stop, ledger=stop)
        return session

    whole = train(tmp_path / "a")
    stopped = train(tmp_path / "b", stop=StopAt(7))
    resumed = train(tmp_path / "c", resume_from=stopped.checkpoints[-1])
    assert _losses(resumed) == {s: v for s, v in _losses(whole).items() if s > 7}
