"""Run a function in N gloo (or NCCL) processes on this machine (torch.multiprocessing spawn)."""

from __future__ import annotations

import faulthandler
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.processes import free_port

# Short enough that a broken test fails instead of waiting out gloo's 30-minute default.
TIMEOUT = timedelta(seconds=60)


def _entry(
    rank: int,
    world: int,
    port: int,
    fn: Callable[..., Any],
    out: Path,
    args: tuple[Any, ...],
    backend: str,
    timeout: timedelta,
) -> None:
    # A rank that dies of a signal (SIGABRT, SIGSEGV) prints every thread's Python stack first.
    faulthandler.enable(all_threads=True)
    torch.set_num_threads(1)
    dist.init_process_group(
        backend,
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timeout,
    )
    try:
        result = fn(rank, world, *args)
        torch.save(result, out / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
    # The rank's work is done and its process group gone: leave without the interpreter's
    # teardown. Once, after TorchInductor had compiled kernels into the ranks, a rank aborted
    # ("terminate called without an active exception": a C++ thread still joinable when its
    # owner was destroyed) within 60 ms of both ranks saving correct results, in
    # destroy_process_group or the teardown after it, and failed a test of what they computed.
    # Should it recur inside destroy_process_group, faulthandler above names the stack.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_distributed(
    fn: Callable[..., Any],
    world: int,
    out: Path,
    *args: Any,
    backend: str = "gloo",
    timeout: timedelta = TIMEOUT,
) -> list[Any]:
    """Call `fn(rank, world, *args)` in `world` processes of one process group (gloo, or
    `backend`; a collective waits `timeout` for the other ranks); return each rank's result
    (saved with torch.save into `out`). `fn` must be importable (module level)."""
    out.mkdir(parents=True, exist_ok=True)
    spawn_args = (world, free_port(), fn, out, args, backend, timeout)
    mp.spawn(_entry, args=spawn_args, nprocs=world, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]
