"""What Ray Train costs: the same job through `resnetctl submit` (embedded Ray, Ray Train,
MLflow) and through a bare PyTorch DDP script (torch.multiprocessing + gloo) running the same
training code and DALI loader, side by side in one run.

    .venv/bin/python benchmarks/overhead.py [--job jobs/quickstart.yaml] [--epochs 4] [--rounds 2]

Prints steady-state images/s of each (median over epochs after the first, over rounds), their
ratio (target >= 0.95), the seconds from submit to the first training step on the embedded
local Ray (target <= 15 s), and where the CPU went while the Ray run trained: cores used by the
training workers, the Train controller, the driver and Ray's daemons, sampled from the process
tree.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import statistics
import sys
import tempfile
import threading
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


def _role(process: Any, driver: int) -> str:
    """Which part of the Ray run a process of the driver's tree is (Ray sets actor titles)."""
    if process.pid == driver:
        return "driver (resnetctl: progress, MLflow run)"
    title = " ".join(process.cmdline()[:1]) or process.name()
    if title.startswith("ray::RayTrainWorker"):
        return "Ray Train workers (training)"
    if title.startswith("ray::TrainController"):
        return "Train controller (reports, MLflow metrics)"
    if title.startswith("ray::"):
        return "other Ray workers and actors"
    return "Ray daemons (GCS, raylet, dashboard, agents)"


class CpuSampler:
    """CPU seconds of every process in this one's tree, sampled twice a second, so that the
    CPU used inside a time window can be split by role afterwards."""

    def __init__(self) -> None:
        import psutil

        self._me = psutil.Process()
        self._samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            snapshot: dict[int, tuple[str, float]] = {}
            for process in [self._me, *self._me.children(recursive=True)]:
                try:
                    # Not cached: a pooled Ray worker takes its actor's title when it gets one.
                    role = _role(process, self._me.pid)
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                snapshot[process.pid] = (role, times.user + times.system)
            self._samples.append((time.time(), snapshot))
            self._stop.wait(0.5)

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Average cores used by each role between wall times `start` and `end`."""
        first = min(self._samples, key=lambda s: abs(s[0] - start))[1]
        last = min(self._samples, key=lambda s: abs(s[0] - end))[1]
        used: dict[str, float] = {}
        for pid, (role, cpu) in last.items():
            before = first.get(pid, (role, 0.0))[1]  # a process started inside the window
            used[role] = used.get(role, 0.0) + (cpu - before) / (end - start)
        return used


def through_resnetctl(spec: JobSpec, workdir: Path) -> tuple[list[float], float, dict[str, float]]:
    """Per-epoch images/s, seconds to the first step of `run_local(spec)`, and the cores each
    role used from the first step to the last epoch's metrics."""
    from mlflow import MlflowClient

    from resnetctl.launch.local import run_local

    cwd = os.getcwd()
    os.chdir(workdir)
    called = time.time()
    try:
        with CpuSampler() as sampler, contextlib.redirect_stdout(sys.stderr):
            summary = run_local(spec)
    finally:
        os.chdir(cwd)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    history = sorted(
        client.get_metric_history(summary.mlflow_run_id, "images_per_second"),
        key=lambda m: m.step,
    )
    if not history:
        raise RuntimeError(f"no images_per_second in run {summary.mlflow_run_id} of {workdir}")
    trained_until = history[-1].timestamp / 1000  # logged by the controller after the last epoch
    cores = sampler.cores(called + summary.startup_seconds, trained_until)
    return [m.value for m in history], summary.startup_seconds, cores


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
    cores: list[dict[str, float]] = []
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
            per_epoch, first_step, used = through_resnetctl(spec, workdir)
            ray += per_epoch[1:]
            startup.append(first_step)
            cores.append(used)
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
    print(f"cores used while the Ray run trained ({os.cpu_count()} on this machine), per round:")
    for role in sorted({r for used in cores for r in used}):
        print(f"  {role:45s} " + "  ".join(f"{used.get(role, 0.0):5.2f}" for used in cores))


if __name__ == "__main__":
    main()
