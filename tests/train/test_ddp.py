"""Two gloo processes: DDP keeps replicas identical, the loop checkpoints from rank 0 and resumes
to the same weights, a non-finite loss on one rank stops every rank (no hang), validation
uses rank 0's BN statistics, the EMA and the final 10-crop evaluation give what one process
computes on the same global batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
from torch import nn

from resnetctl.train.checkpoint import unwrap
from resnetctl.train.loop import run_training
from resnetctl.train.runner import NonFiniteLossError, Placement, Runner
from tests.train._dist import run_distributed
from tests.train._helpers import (
    FINAL_EVAL,
    IMAGENET_DATA,
    NUM_CLASSES,
    FakeSession,
    batches,
    job_spec,
    ten_crop_batches,
    tiny_model,
)


def _params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in model.parameters()]


def _one_step(rank: int, world: int) -> dict[str, Any]:
    runner = Runner(job_spec(train={"epochs": 1}), Placement.from_process_group())
    before = _params(runner.model)
    images, labels = next(iter(runner.train_loader))
    runner.train_step(images, labels, epoch=1, step_in_epoch=1, meter=_meter(runner))
    return {
        "ddp": isinstance(runner.model, nn.parallel.DistributedDataParallel),
        "before": before,
        "after": _params(runner.model),
        "images": images,
    }


def _meter(runner: Runner) -> Any:
    from resnetctl.train.metrics import EpochMeter

    return EpochMeter(runner.device)


def _scenarios(rank: int, world: int, out: Path) -> dict[str, Any]:
    # One process group for every scenario: spawning and importing costs more than training.
    return {
        "one_step": _one_step(rank, world),
        "nan": _nan_on_rank_1(rank, world),
        "resume": _train_and_resume(rank, world, out),
        "bn": _validate_after_training(rank, world),
        "ema": _ema_on_two_ranks(rank, world),
        "final": _final_eval_on_two_ranks(rank, world, out),
    }


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Path]:
    out = tmp_path_factory.mktemp("ddp")
    return run_distributed(_scenarios, 2, out / "results", out), out


def test_one_ddp_step_leaves_identical_updated_replicas(ddp: Any) -> None:
    rank0, rank1 = (r["one_step"] for r in ddp[0])
    assert rank0["ddp"] and rank1["ddp"]
    assert not torch.equal(rank0["images"], rank1["images"])  # different shards
    for a, b in zip(rank0["after"], rank1["after"], strict=True):
        assert torch.equal(a, b)
    changed = [not torch.equal(a, b) for a, b in zip(rank0["before"], rank0["after"], strict=True)]
    assert all(changed)


def _train_and_resume(rank: int, world: int, out: Path) -> dict[str, Any]:
    spec = job_spec(train={"epochs": 2}, checkpoint={"every_n_epochs": 1})
    full = FakeSession(out / f"full{rank}")
    run_training(spec, Placement.from_process_group(), full)
    dist.barrier()  # rank 0's checkpoint files exist before rank 1 reads them
    full_runner_params = _last_params(out / "full0" / "epoch_0002")
    resumed = FakeSession(out / f"resumed{rank}", resume_from=out / "full0" / "epoch_0001")
    run_training(spec, Placement.from_process_group(), resumed)
    return {
        "full_reports": [(m["epoch"], p is not None) for m, p, _ in full.reports],
        "resumed_epochs": [m["epoch"] for m, _, _ in resumed.epoch_reports],
        "full_loss": full.reports[-1][0]["train_loss"],
        "resumed_loss": resumed.epoch_reports[-1][0]["train_loss"],
        "full_params": full_runner_params,
    }


def _last_params(checkpoint: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint / "state.pt", weights_only=True)
    assert len(state["rng"]) == 2  # every rank's generators travel in rank 0's file
    return state["model"]


def test_loop_under_ddp_checkpoints_on_rank_0_and_resumes_at_the_next_epoch(ddp: Any) -> None:
    rank0, rank1 = (r["resume"] for r in ddp[0])
    out = ddp[1]
    assert rank0["full_reports"] == [(1, True), (2, True)]
    assert rank1["full_reports"] == [(1, False), (2, False)]  # reports, without files
    assert rank0["resumed_epochs"] == rank1["resumed_epochs"] == [2]
    # Same data order, same RNG, same weights: resuming reproduces the uninterrupted run.
    assert rank0["resumed_loss"] == pytest.approx(rank0["full_loss"], rel=1e-5)
    resumed_final = torch.load(out / "resumed0" / "epoch_0002" / "state.pt", weights_only=True)[
        "model"
    ]
    for key, value in rank0["full_params"].items():
        assert torch.allclose(value.float(), resumed_final[key].float(), atol=1e-5), key


class NaNOnRank(nn.Module):
    """NaN logits on one rank only, from the first training forward."""

    def __init__(self, bad_rank: int) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.bad = dist.get_rank() == bad_rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out * float("nan") if self.bad and self.training else out


def _nan_on_rank_1(rank: int, world: int) -> str:
    runner = Runner(
        job_spec(train={"max_nonfinite_steps": 1}),
        Placement.from_process_group(),
        model=NaNOnRank(bad_rank=1),
        train_loader=batches(4),
        val_loader=batches(1),
    )
    try:
        runner.run_epoch(1)
    except NonFiniteLossError as exc:
        return str(exc)
    return "no error"


def test_a_non_finite_loss_on_one_rank_stops_both_ranks_at_the_same_step(ddp: Any) -> None:
    messages = [r["nan"] for r in ddp[0]]
    assert all("epoch 1, step 2" in m for m in messages), messages


def _validate_after_training(rank: int, world: int) -> dict[str, Any]:
    # Each rank trains on its own batches, so BN running statistics drift apart after DDP's
    # last buffer broadcast (at the start of the last forward).
    runner = Runner(
        job_spec(train={"epochs": 1}),
        Placement.from_process_group(),
        model=tiny_model(),
        train_loader=batches(2, seed=rank),
        val_loader=batches(1, seed=10 + rank),
    )
    metrics = runner.run_epoch(1)
    return {"metrics": metrics, "state": runner.state_dict()["model"]}


def test_validation_uses_rank_0_bn_statistics_so_the_metric_is_the_saved_models(
    ddp: Any,
) -> None:
    rank0, rank1 = (r["bn"] for r in ddp[0])
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key
    # The reported metric is that of rank 0's weights (what the checkpoint holds) on the whole
    # validation set, i.e. both shards.
    model = tiny_model()
    model.load_state_dict(rank0["state"])
    model.eval()
    shards = [*batches(1, seed=10), *batches(1, seed=11)]
    images, labels = (torch.cat(t) for t in zip(*shards, strict=True))
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(images), labels).item()
    assert rank0["metrics"]["val_loss"] == pytest.approx(loss, rel=1e-5)
    assert rank1["metrics"]["val_loss"] == rank0["metrics"]["val_loss"]


EMA = {"decay": 0.8, "warmup": True}
EMA_TRAIN = {"epochs": 1, "base_lr": 0.2, "ema": EMA, "optimizer": {"weight_decay": 1e-3}}


def _ema_on_two_ranks(rank: int, world: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = tiny_model()
    runner = Runner(
        job_spec(train=EMA_TRAIN),
        Placement.from_process_group(),
        model=model,
        train_loader=batches(3, seed=20 + rank),
        val_loader=batches(1, seed=30 + rank),
    )
    assert runner.ema is not None
    initial = {k: v.clone() for k, v in unwrap(runner.model).state_dict().items()}
    runner.train_epoch(1)
    trained = {k: v.clone() for k, v in runner.ema.module.state_dict().items()}
    metrics = runner.validate()
    (group,) = runner.optimizer.param_groups
    return {
        "initial": initial,
        "trained": trained,  # this rank's EMA, before validation gave it rank 0's buffers
        "validated": runner.ema.module.state_dict(),
        "updates": runner.ema.updates,
        "sgd": {k: group[k] for k in ("lr", "momentum", "weight_decay", "nesterov")},
        "val_loss_ema": metrics["val_loss_ema"],
    }


def _reference_ema(initial: dict[str, torch.Tensor], sgd: dict[str, Any]) -> dict[str, Any]:
    """The EMA of one process fed both ranks' batches of each step: the gradient is the mean of
    the two halves' (DDP's average), each half normalised by its own batch statistics, BN's
    running statistics those of rank 0's half (DDP broadcasts rank 0's buffers before every
    forward), and ema = d * ema + (1 - d) * weights after each step, with the warm-up decay."""
    model = tiny_model()
    model.load_state_dict(initial)
    optimizer = torch.optim.SGD(model.parameters(), **sgd)
    ema = {k: v.clone() for k, v in initial.items()}
    model.train()
    shards = [batches(3, seed=20 + rank) for rank in (0, 1)]
    for update, ((x0, y0), (x1, y1)) in enumerate(zip(*shards, strict=True)):
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        (nn.functional.cross_entropy(model(x1), y1) / 2).backward()
        with torch.no_grad():
            for key, value in model.named_buffers():
                value.copy_(buffers[key])
        (nn.functional.cross_entropy(model(x0), y0) / 2).backward()
        optimizer.step()
        optimizer.zero_grad()
        decay = min(EMA["decay"], (1 + update) / (10 + update))
        for key, value in model.state_dict().items():
            if value.is_floating_point():
                ema[key] = decay * ema[key] + (1 - decay) * value.detach()
            else:
                ema[key] = value.clone()
    return ema


def test_ema_weights_are_the_same_on_both_ranks_and_those_of_one_process(ddp: Any) -> None:
    rank0, rank1 = (r["ema"] for r in ddp[0])
    assert rank0["updates"] == rank1["updates"] == 3
    # Parameters agree on the ranks from the start (DDP averages gradients); BN statistics
    # drift apart, each rank's own batches, until validation hands out rank 0's.
    trained0, trained1 = rank0["trained"], rank1["trained"]
    drifted = [k for k in trained0 if not torch.equal(trained0[k], trained1[k])]
    assert drifted and all("running" in k for k in drifted), drifted
    for key, value in rank0["validated"].items():
        assert torch.equal(value, rank1["validated"][key]), key
    expected = _reference_ema(rank0["initial"], rank0["sgd"])
    for key, value in rank0["validated"].items():
        torch.testing.assert_close(value, expected[key], rtol=1e-5, atol=1e-6, msg=key)
    # The reported EMA metric is that of those weights on both ranks' validation batches.
    model = tiny_model()
    model.load_state_dict(expected)
    model.eval()
    shards = [*batches(1, seed=30), *batches(1, seed=31)]
    images, labels = (torch.cat(t) for t in zip(*shards, strict=True))
    with torch.no_grad():
        loss = nn.functional.cross_entropy(model(images), labels).item()
    assert rank0["val_loss_ema"] == rank1["val_loss_ema"] == pytest.approx(loss, rel=1e-5)


def _final_eval_on_two_ranks(rank: int, world: int, out: Path) -> dict[str, Any]:
    spec = job_spec(
        train={"epochs": 3, "base_lr": 0.5, **FINAL_EVAL},
        data=IMAGENET_DATA,
        checkpoint={"every_n_epochs": 1},
    )
    torch.manual_seed(0)
    runner = Runner(
        spec,
        Placement.from_process_group(),
        model=tiny_model(),
        train_loader=batches(3, seed=rank),
        val_loader=batches(2, seed=50 + rank),
        # Shards of unequal length, as the last images of a data set leave them.
        final_eval_loader=ten_crop_batches(2 - rank, seed=40 + rank),
    )
    session = FakeSession(out / f"final{rank}")
    (out / f"final{rank}").mkdir()
    run_training(spec, Placement.from_process_group(), session, runner=runner)
    return {
        "reports": [m for m, _, _ in session.reports],
        "checkpoints": [str(path) for path in session.checkpoints],
    }


def test_the_final_ten_crop_evaluation_sharded_over_ranks_is_one_processs(ddp: Any) -> None:
    rank0, rank1 = (r["final"] for r in ddp[0])
    last0, last1 = rank0["reports"][-1], rank1["reports"][-1]
    keys = ("val_loss_10crop", "val_top1_error_10crop", "val_top5_error_10crop", "final_eval_epoch")
    assert {k: last0[k] for k in keys} == {k: last1[k] for k in keys}
    errors = [m["val_top1_error"] for m in rank0["reports"]]
    epoch = errors.index(min(errors)) + 1
    assert last0["final_eval_epoch"] == epoch
    # One process: the best checkpoint's weights on both shards' images, each image's 10 views'
    # probabilities averaged.
    model = tiny_model()
    model.load_state_dict(torch.load(Path(rank0["checkpoints"][epoch - 1]) / "state.pt")["model"])
    model.eval()
    data = [*ten_crop_batches(2, seed=40), *ten_crop_batches(1, seed=41)]
    images = torch.cat([x for x, _ in data])
    labels = torch.cat([y for _, y in data])
    with torch.no_grad():
        probs = model(images.flatten(0, 1)).softmax(-1).view(len(labels), 10, NUM_CLASSES).mean(1)
    ranked = probs.argsort(dim=1, descending=True)
    top1 = 100.0 * float((ranked[:, 0] != labels).float().mean())
    top5 = 100.0 * float((ranked[:, :5] != labels[:, None]).all(dim=1).float().mean())
    loss = float(nn.functional.nll_loss(probs.clamp_min(1e-12).log(), labels))
    assert len(labels) == 18
    assert last0["val_top1_error_10crop"] == pytest.approx(top1)
    assert last0["val_top5_error_10crop"] == pytest.approx(top5)
    assert last0["val_loss_10crop"] == pytest.approx(loss, rel=1e-5)
