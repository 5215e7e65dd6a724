"""What Ray Train costs: the same job through `resnetctl submit` (embedded Ray, Ray Train,
MLflow) and through a bare PyTorch DDP script (torch.multiprocessing + gloo) running the same
training code and DALI loader, side by side in one run.

    .venv/bin/python benchmarks/overhead.py [--job jobs/quickstart.yaml] [--epochs 4] [--rounds 2]

Prints steady-state images/s of each (median over epochs after the first, over rounds), their
ratio (target >= 0.95), and the seconds from submit to the first training step on the embedded
local Ray (target <= 15 s).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

from resnetctl.spec import JobSpec, load_spec

ROOT = Path(__file__).resolve().parents[1]


class _NullSession:
    """The loop's host without Ray: no checkpoint to resume, reports kept in a list."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def checkpoint_dir(self) -> Iterator[None]:
        yield None

    def report(self, metrics: dict[str, Any], checkpoint_dir: str | None, name: str) -> None:
        self.reports.append(metrics)


def _bare_worker(rank: int, world: int, port: int, spec_json: dict, queue: Any) -> None:
    import torch

    from resnetctl.train.loop import run_training
    from resnetctl.train.runner import Placement

    spec = JobSpec.model_validate(spec_json)
    # Ray Train gives each worker as many intra-op threads as it has CPUs; so must we, or the
    # two processes oversubscribe the cores and the comparison measures that instead.
    threads = max(1, int(spec.resources.cpus_per_worker))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        session = _NullSession()
        run_training(spec, Placement.from_process_group(), session)
        if rank == 0:
            queue.put([r["images_per_second"] for r in session.reports])
    finally:
        dist.destroy_process_group()


def bare_ddp(spec: JobSpec) -> list[float]:
    """Per-epoch images/s of a plain torch.multiprocessing DDP run of `spec`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = mp.get_context("spawn")
    queue = context.SimpleQueue()
    mp.start_processes(
        _bare_worker,
        args=(spec.resources.workers, port, spec.model_dump(mode="json"), queue),
        nprocs=spec.resources.workers,
        start_method="spawn",
    )
    return queue.get()


def through_resnetctl(spec: JobSpec, workdir: Path) -> tuple[list[float], float]:
    """Per-epoch images/s and seconds to the first step of `run_local(spec)`."""
    from mlflow import MlflowClient

    from resnetctl.launch.local import run_local

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            summary = run_local(spec)
    finally:
        os.chdir(cwd)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    history = client.get_metric_history(summary.mlflow_run_id, "images_per_second")
    return [m.value for m in sorted(history, key=lambda m: m.step)], summary.startup_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=str(ROOT / "jobs" / "quickstart.yaml"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    spec = load_spec(
        args.job,
        [f"train.epochs={args.epochs}", "checkpoint.every_n_epochs=1000", "failure.max_failures=0"],
    )
    bare: list[float] = []
    ray: list[float] = []
    startup: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("RESNETCTL_STORAGE", str(Path(tmp) / "runs"))
        for round_ in range(args.rounds):  # interleaved: machine noise hits both alike
            start = time.monotonic()
            bare += bare_ddp(spec)[1:]
            print(
                f"round {round_ + 1}: bare DDP done in {time.monotonic() - start:.0f} s",
                file=sys.stderr,
            )
            workdir = Path(tmp) / f"round{round_}"
            workdir.mkdir()
            per_epoch, first_step = through_resnetctl(spec, workdir)
            ray += per_epoch[1:]
            startup.append(first_step)
    bare_ips, ray_ips = statistics.median(bare), statistics.median(ray)
    print(
        f"job {spec.name}: {spec.model.name}, {spec.resources.workers} workers, "
        f"{args.epochs} epochs x {args.rounds} rounds (first epoch of each run excluded)"
    )
    print(f"bare PyTorch DDP (gloo)      {bare_ips:8.1f} img/s")
    print(f"resnetctl submit (Ray Train) {ray_ips:8.1f} img/s")
    print(f"ratio resnetctl / bare: {ray_ips / bare_ips:.3f} (target >= 0.95)")
    print(
        f"seconds from submit to first training step: "
        f"{', '.join(f'{s:.1f}' for s in startup)} (target <= 15)"
    )


if __name__ == "__main__":
    main()
