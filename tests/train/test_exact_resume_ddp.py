"""Exact mid-epoch resume with two gloo ranks: each rank's DALI pipeline state, RNG states and
running meters go into rank 0's checkpoint and come back to the right rank, and the ranks agree
on when to stop (one step after the notice, through the asynchronous flag exchange)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from resnetctl.train.checkpoint import read_meta
from resnetctl.train.loop import run_training
from resnetctl.train.runner import Placement, Runner
from tests.train._dist import run_distributed
from tests.train._helpers import FakeSession
from tests.train.test_exact_resume import StopAt, _losses, _spec


def _three_runs(rank: int, world: int, out: Path) -> dict[str, Any]:
    spec = _spec()

    def train(name: str, resume_from: Path | None = None, stop: StopAt | None = None) -> Any:
        runner = Runner(spec, Placement.from_process_group())
        # Rank 0 keeps the checkpoints; a resume reads rank 0's folder on every rank.
        session = FakeSession(out / name / f"rank{rank}", resume_from=resume_from)
        run_training(
            spec, Placement.from_process_group(), session, runner=runner, notices=stop, ledger=stop
        )
        return session, runner

    whole, reference = train("whole")
    stopped, first = train("stopped", stop=StopAt(4))
    torch.distributed.barrier()
    last = sorted((out / "stopped" / "rank0").iterdir())[-1]
    resumed, again = train("resumed", resume_from=last)
    weights_equal = all(
        torch.equal(a, b)
        for a, b in zip(
            reference.model.module.state_dict().values(),
            again.model.module.state_dict().values(),
            strict=True,
        )
    )
    return {
        "whole": _losses(whole),
        "stopped_at": first.step,
        "checkpoint": last.name,
        "meta": read_meta(last) if rank == 0 else None,
        "resumed": _losses(resumed),
        "whole_epochs": [m for m, _, _ in whole.epoch_reports],
        "resumed_epochs": [m for m, _, _ in resumed.epoch_reports],
        "weights_equal": weights_equal,
    }


def test_two_ranks_stopped_mid_epoch_resume_exactly(tmp_path: Path) -> None:
    ranks = run_distributed(_three_runs, 2, tmp_path, tmp_path)
    # 48 images over 2 ranks, 8 per rank: 3 steps an epoch. The stop is heard after step 4
    # and agreed at the next boundary: the ranks stop after step 5, the middle of epoch 2.
    assert [r["stopped_at"] for r in ranks] == [5, 5]
    meta = ranks[0]["meta"]
    assert ranks[0]["checkpoint"] == "epoch_0002_step_000000005"
    assert meta["position"] == {"epoch": 2, "steps_done": 2}
    for r in ranks:
        assert r["resumed"] == {s: v for s, v in r["whole"].items() if s > 5}
        assert r["weights_equal"]
        whole = {m["epoch"]: m for m in r["whole_epochs"]}
        for m in r["resumed_epochs"]:
            assert m["train_top1_error"] == whole[m["epoch"]]["train_top1_error"]
            assert m["val_loss"] == whole[m["epoch"]]["val_loss"]
