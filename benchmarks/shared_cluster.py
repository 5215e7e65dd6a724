"""What the suite's loopback cluster costs to start and to keep: whether one cluster shared by a
whole test session would save CPU on this machine, or spend it.

    .venv/bin/python benchmarks/shared_cluster.py [--settle 30] [--idle 120] [--tier 2830]

Starts what the slow tier's `cluster` fixture starts (an MLflow server, then `ray start --head`
and one `ray start --address` worker node, one CPU each, on 127.0.0.1), samples the CPU time of
every process under this one, and prints:

- the seconds until the cluster answers, and the CPU seconds its processes spent to get there
  and through `--settle` seconds more (Ray's daemons finish starting after the dashboard
  answers);
- the cores the idle cluster then takes, over `--idle` seconds;
- the break-even: how long a shared cluster may sit idle before it has cost what one start
  costs, against the slow tier's length (`--tier` s) and the starts it could replace
  (`--uses`: the tests that need only "a cluster", and no node of theirs to kill or drain, are
  `tests/launch/test_cluster_jobs.py` and the cluster evaluation of `test_eval_job.py`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from startup_cpu import sample_cpu  # noqa: E402 (run as a script, this folder is on the path)
from tests.launch.conftest import (  # noqa: E402 (the suite's loopback cluster)
    Processes,
    mlflow_up,
    start_mlflow,
    two_node_cluster,
)


def _cpu_by_name(seen: dict[int, tuple[str, float]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for name, seconds in seen.values():
        totals[name] += seconds
    return dict(totals)


def _sample(seen: dict[int, tuple[str, float]]) -> float:
    """`sample_cpu` of every process under this one (not this one: it only measures)."""
    return sample_cpu(psutil.Process().children(recursive=True), seen)


def _sampled_sleep(seconds: float, seen: dict[int, tuple[str, float]]) -> float:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        _sample(seen)
        time.sleep(min(0.5, max(0.0, end - time.monotonic())))
    return _sample(seen)


def main(argv: list[str] | None = None) -> int:
    """Start the loopback cluster, measure its start and its idle cost, print the break-even."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settle", type=float, default=30, help="seconds after it answers")
    parser.add_argument("--idle", type=float, default=120, help="seconds of idle sampling")
    parser.add_argument("--tier", type=float, default=2830, help="the slow tier's seconds")
    parser.add_argument("--uses", type=int, default=2, help="tests that would share it")
    args = parser.parse_args(argv)

    seen: dict[int, tuple[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="resnetctl-shared-cluster-") as work:
        logs = Path(work)
        server = Processes(logs)
        started = time.monotonic()
        try:
            mlflow = start_mlflow(server, logs, str(logs / "artifacts"))
            mlflow_up(mlflow, logs)
            with two_node_cluster(logs) as _nodes:
                up = time.monotonic() - started
                at_up = _sample(seen)
                settled = _sampled_sleep(args.settle, seen)
                idle_cpu = _sampled_sleep(args.idle, seen) - settled
        finally:
            server.stop()

    start_cpu = settled
    idle_cores = idle_cpu / args.idle
    break_even = start_cpu / idle_cores if idle_cores > 0 else float("inf")
    print(f"cluster and MLflow answering after {up:.1f} s wall")
    print(
        f"CPU to start: {at_up:.1f} s when it answers, "
        f"{start_cpu:.1f} s after {args.settle:.0f} s more"
    )
    print("CPU by process name, start and idle together:")
    for name, seconds in sorted(_cpu_by_name(seen).items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:<24} {seconds:6.1f} s")
    print(f"idle: {idle_cores:.3f} cores over {args.idle:.0f} s")
    print(f"break-even: idle for {break_even:.0f} s costs one start's CPU")
    shared = idle_cores * args.tier
    saved = start_cpu * (args.uses - 1)
    print(
        f"one cluster kept through a {args.tier:.0f} s slow tier: {shared:.0f} CPU s idle, "
        f"against {saved:.0f} CPU s saved by {args.uses} tests sharing it "
        f"(spent / saved: {shared / saved:.1f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
