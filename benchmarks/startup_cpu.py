"""CPU seconds that every process spends from `resnetctl submit` to the first training step.

    .venv/bin/python benchmarks/startup_cpu.py [--job jobs/quickstart.yaml]

Starts `resnetctl submit JOB --set train.epochs=1` on the embedded Ray in a temporary folder,
samples the CPU time of every process in its tree four times a second, and stops at the first
training step (when rank 0 wraps the model in DDP, just before the first batch). The sum divided
by the machine's cores is a lower bound on the seconds to the first step that no scheduling can
beat; processes that live less than a sampling period are missed, so the true sum is higher.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import psutil

from resnetctl.host import usable_cpus

ROOT = Path(__file__).resolve().parents[1]
FIRST_STEP = "Wrapping provided model in DistributedDataParallel"


def sample_cpu(processes: Iterable[psutil.Process], seen: dict[int, tuple[str, float]]) -> float:
    """Record the name and CPU seconds of each of `processes` in `seen` by PID (a process that
    has ended keeps its last sample); returns the sum over every process seen so far."""
    for proc in processes:
        try:
            with proc.oneshot():
                times = proc.cpu_times()
                seen[proc.pid] = (proc.name(), times.user + times.system)
        except psutil.Error:
            pass
    return sum(cpu for _, cpu in seen.values())


def main(argv: list[str] | None = None) -> int:
    """Run one submit to its first step and print the CPU it took, by process name."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, default=ROOT / "jobs" / "quickstart.yaml")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="resnetctl-startup-") as work:
        log = Path(work) / "stderr.txt"
        env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, "-m", "resnetctl", "submit", str(args.job.resolve())]
        start = time.monotonic()
        with log.open("w") as stderr:
            # A session of its own: the driver and the Ray it starts end as one process group.
            process = subprocess.Popen(
                [*command, "--set", "train.epochs=1"],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        seen: dict[int, tuple[str, float]] = {}
        try:
            root = psutil.Process(process.pid)
            while FIRST_STEP not in log.read_text(errors="replace"):
                if process.poll() is not None or time.monotonic() - start > args.timeout:
                    print(log.read_text(errors="replace")[-3000:], file=sys.stderr)
                    print("submit ended or timed out before its first step", file=sys.stderr)
                    return 1
                sample_cpu([root, *root.children(recursive=True)], seen)
                time.sleep(0.25)
            wall = time.monotonic() - start
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()

    cores = usable_cpus()
    total = sum(cpu for _, cpu in seen.values())
    print(
        f"submit to first step: {wall:.1f} s wall; {total:.1f} CPU seconds in {len(seen)} "
        f"processes; on {cores} cores no schedule can take less than {total / cores:.1f} s"
    )
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, cpu in seen.values():
        by_name[name].append(cpu)
    for name, cpus in sorted(by_name.items(), key=lambda item: -sum(item[1])):
        print(f"  {name:<36} {len(cpus):3d} x  {sum(cpus):6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
