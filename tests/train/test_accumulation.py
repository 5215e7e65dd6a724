"""Gradient accumulation and clipping: what an optimiser step does with k micro-batches."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from resnetctl.train.runner import Placement, Runner
from tests.train._dist import run_distributed
from tests.train._helpers import NUM_CLASSES, batches, job_spec


def bn_free_model() -> nn.Module:
    # No BatchNorm: BN normalises each micro-batch with its own statistics, so k micro-batches
    # of b images are not the same computation as one batch of k*b (nor are its running
    # statistics); without it the accumulated gradient is exactly the big batch's.
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, NUM_CLASSES),
    )


def concatenated(micro: list[Any], k: int) -> list[Any]:
    return [
        (torch.cat([x for x, _ in micro[i : i + k]]), torch.cat([y for _, y in micro[i : i + k]]))
        for i in range(0, len(micro), k)
    ]


def test_accumulated_steps_equal_big_batch_steps() -> None:
    micro = batches(6, batch=4)
    model = bn_free_model()
    recipe = {
        "epochs": 1,
        "base_lr": 0.2,
        "lr_reference_batch": 12,
        "label_smoothing": 0.1,
        "optimizer": {"momentum": 0.9, "weight_decay": 1e-3},
    }
    accumulated = Runner(
        job_spec({**recipe, "batch_size_per_worker": 4, "accumulation_steps": 3}),
        model=copy.deepcopy(model),
        train_loader=micro,
        val_loader=batches(1),
    )
    big = Runner(
        job_spec({**recipe, "batch_size_per_worker": 12}),
        model=copy.deepcopy(model),
        train_loader=concatenated(micro, 3),
        val_loader=batches(1),
    )
    # The scaling rule sees the effective batch of 12, not the micro-batch of 4.
    assert accumulated.peak_lr == big.peak_lr == pytest.approx(0.2)
    assert accumulated.steps_per_epoch == big.steps_per_epoch == 2
    a = accumulated.train_epoch(1)
    b = big.train_epoch(1)
    assert accumulated.step == big.step == 2
    torch.testing.assert_close(a["train_loss"], b["train_loss"])
    for pa, pb in zip(accumulated.model.parameters(), big.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb)
    # ...and they did move: the test would pass trivially on untrained weights otherwise.
    assert not torch.allclose(next(model.parameters()), next(big.model.parameters()))


class CountingSync(nn.Module):
    """Stands in for DDP: records which forwards ran inside `no_sync`."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.inside = False
        self.forwards: list[bool] = []

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        self.inside = True
        try:
            yield
        finally:
            self.inside = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.forwards.append(self.inside)
        return self.inner(x)


def test_ddp_all_reduces_only_on_the_last_micro_batch() -> None:
    model = CountingSync(bn_free_model())
    r = Runner(
        job_spec({"epochs": 1, "batch_size_per_worker": 2, "accumulation_steps": 3}),
        model=model,
        train_loader=batches(6, batch=2),
        val_loader=batches(1),
    )
    r.train_epoch(1)
    assert model.forwards == [True, True, False, True, True, False]


def test_gradient_clipping_bounds_the_update() -> None:
    clip, lr = 1e-3, 0.5
    spec = {
        "epochs": 1,
        "base_lr": lr,
        "optimizer": {"momentum": 0.0, "weight_decay": 0.0},
        "grad_clip_norm": clip,
    }
    model = bn_free_model()
    before = [p.detach().clone() for p in model.parameters()]
    r = Runner(job_spec(spec), model=model, train_loader=batches(1), val_loader=batches(1))
    r.train_epoch(1)
    delta = torch.cat(
        [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    )
    # Plain SGD moves by lr x gradient: the clipped gradient has norm `clip` exactly.
    assert r.grad_norm is not None and float(r.grad_norm) > clip
    torch.testing.assert_close(delta.norm().item(), lr * clip, rtol=1e-4, atol=0.0)


def test_compile_switch_compiles_the_model_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compiling on 2 shared cores takes long: record the call, run the eager function.
    compiled: list[Any] = []

    def fake_compile(fn: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = bn_free_model()
    r = Runner(
        job_spec({"epochs": 1, "compile": True}),
        model=model,
        train_loader=batches(1),
        val_loader=batches(1),
    )
    assert compiled == [model._call_impl] and r.model is model
    assert model._compiled_call_impl is not None
    off = Runner(
        job_spec({"epochs": 1}),
        model=bn_free_model(),
        train_loader=batches(1),
        val_loader=batches(1),
    )
    assert off.model._compiled_call_impl is None and len(compiled) == 1
    r.train_epoch(1)  # trains through the compiled entry point
    assert "0.weight" in r.state_dict()["model"]  # keys without torch.compile's prefix


class Wrapper(nn.Module):
    """Stands in for DistributedDataParallel: the trained network is its `module`."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)


def test_compile_compiles_the_ddp_wrapper_not_the_network_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # torch.compile over DDP, as PyTorch documents it: Dynamo then meets DDP's forward and its
    # DDPOptimizer splits the graph at the gradient buckets. In place, so `unwrap`, the state
    # dict's keys and the eager deep copies (EMA, final evaluation) stay as they were.
    compiled: list[Any] = []

    def fake_compile(fn: Any, *args: Any, **kwargs: Any) -> Any:
        compiled.append(fn)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    network = bn_free_model()
    r = Runner(
        job_spec({"epochs": 1, "compile": True, "ema": {"decay": 0.9}}),
        Placement(wrap_model=Wrapper),
        model=network,
        train_loader=batches(1),
        val_loader=batches(1),
    )
    assert isinstance(r.model, Wrapper) and r.model.module is network
    assert compiled == [r.model._call_impl], compiled
    assert r.model._compiled_call_impl is not None and network._compiled_call_impl is None
    assert r.ema is not None and r.ema.module._compiled_call_impl is None
    r.train_epoch(1)
    assert set(r.state_dict()["model"]) == set(bn_free_model().state_dict())


RECIPE = {"epochs": 1, "base_lr": 0.2, "optimizer": {"momentum": 0.9, "weight_decay": 1e-3}}


def _accumulate_under_ddp(rank: int, world: int) -> list[torch.Tensor]:
    micro = batches(4, batch=4)[2 * rank : 2 * rank + 2]  # each rank: its own 2 micro-batches
    r = Runner(
        job_spec({**RECIPE, "batch_size_per_worker": 4, "accumulation_steps": 2}),
        Placement.from_process_group(),
        model=bn_free_model(),
        train_loader=micro,
        val_loader=batches(1),
    )
    assert isinstance(r.model, nn.parallel.DistributedDataParallel)
    r.train_epoch(1)
    return [p.detach().clone() for p in r.model.parameters()]


def test_accumulation_under_ddp_equals_the_global_big_batch(tmp_path: Path) -> None:
    ranks = run_distributed(_accumulate_under_ddp, 2, tmp_path)
    big = Runner(
        job_spec({**RECIPE, "batch_size_per_worker": 16}),
        model=bn_free_model(),
        train_loader=concatenated(batches(4, batch=4), 4),
        val_loader=batches(1),
    )
    big.train_epoch(1)
    for rank in ranks:
        for pa, pb in zip(rank, big.model.parameters(), strict=True):
            torch.testing.assert_close(pa, pb)
