"""`train.compile` under DDP with two gloo processes: torch.compile over the DDP wrapper
(TorchInductor on the CPU), whose DDPOptimizer cuts the graph at the gradient buckets, trains as
the eager run does."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.nn.parallel import DistributedDataParallel

from resnetctl.models import create_model
from resnetctl.train.checkpoint import unwrap
from resnetctl.train.runner import Placement, Runner
from tests.train._dist import run_distributed
from tests.train._helpers import NUM_CLASSES, batches, job_spec

EPOCHS, STEPS = 2, 3


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _train(rank: int, world: int, compile_: bool) -> dict[str, Any]:
    from torch._dynamo.utils import counters

    spec = job_spec(train={"epochs": EPOCHS, "compile": compile_})
    torch.manual_seed(0)
    # A resnetctl network: its forward is the code Dynamo compiles inside DDP's.
    model = create_model("cifar_resnet8", num_classes=NUM_CLASSES)
    records = Records()
    logger = logging.getLogger("torch._dynamo.backends.distributed")
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    runner = Runner(
        spec,
        Placement.from_process_group(),
        model=model,
        train_loader=batches(STEPS, seed=rank),
        val_loader=batches(1, seed=10 + rank),
    )
    losses: list[float] = []
    for epoch in range(1, EPOCHS + 1):
        runner.train_epoch(epoch, on_step=lambda update: losses.append(update["loss"]), every=1)
    logger.removeHandler(records)
    return {
        "ddp": isinstance(runner.model, DistributedDataParallel),
        "wrapper_compiled": runner.model._compiled_call_impl is not None,
        "network_compiled": unwrap(runner.model)._compiled_call_impl is not None,
        "graphs": int(counters["stats"]["unique_graphs"]),
        "ddp_optimizer": [m for m in records.messages if "DDPOptimizer" in m],
        "losses": losses,
        "keys": sorted(runner.state_dict()["model"]),
    }


def _eager_then_compiled(rank: int, world: int) -> dict[str, Any]:
    return {"eager": _train(rank, world, False), "compiled": _train(rank, world, True)}


@pytest.mark.slow  # TorchInductor compiles the forward and backward on each rank: minutes
def test_compiled_ddp_trains_like_eager_ddp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The ranks (which import resnetctl first) take resnetctl's defaults for TorchInductor, not
    # the suite's: its cache in resnetctl's cache folder, nothing in the temp folder.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    monkeypatch.setenv("RESNETCTL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.delenv("TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS", raising=False)
    # One rank may compile for minutes while the other waits in the first all-reduce.
    ranks = run_distributed(
        _eager_then_compiled, 2, tmp_path / "out", timeout=timedelta(minutes=15)
    )
    for result in ranks:
        eager, compiled = result["eager"], result["compiled"]
        assert eager["ddp"] and compiled["ddp"]
        # What is compiled: DDP's wrapper, not the network inside it.
        assert compiled["wrapper_compiled"] and not compiled["network_compiled"]
        assert not eager["wrapper_compiled"] and eager["graphs"] == 0
        assert compiled["graphs"] > 0 and compiled["ddp_optimizer"], compiled
        assert compiled["keys"] == eager["keys"]
        # The same loss, step after step, to the rounding of fused kernels.
        assert len(compiled["losses"]) == EPOCHS * STEPS
        torch.testing.assert_close(compiled["losses"], eager["losses"], rtol=1e-3, atol=1e-4)
    # ... and the ranks agree: the losses are averaged over both.
    assert ranks[0]["compiled"]["losses"] == ranks[1]["compiled"]["losses"]
    # The compiled kernels are in resnetctl's cache, for the next run; the temp folder is empty.
    assert list((tmp_path / "cache" / "torchinductor").rglob("*.so"))
    assert sorted(p.name for p in (tmp_path / "tmp").iterdir()) == []
