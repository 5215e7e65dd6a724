"""What TorchInductor's precompiled headers save on a cold compile, and what resnetctl's compile
cache saves on the next run: side by side in one run.

    .venv/bin/python benchmarks/compile_cache.py [--model cifar_resnet20] [--batch 16] [--rounds 2]

Each measurement is a new process compiling one SGD training step of the model (forward, loss,
backward, update) with `torch.compile`, timed from the first call to the end of the update, with
fresh `TMPDIR` and `TORCHINDUCTOR_CACHE_DIR` folders:

- `headers on`: torch's default, precompiled headers written to the temp folder;
- `headers off`: resnetctl's default (`TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS=0`, nothing in
  the temp folder);
- `cache warm`: headers off, the same network again in the cache the previous process filled
  (what the next run of a job finds in `<cache>/torchinductor`).

Rounds alternate the two cold modes. Printed: each time, the medians, the ratio off / on, and
what each process left in its temp folder.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

STEP = r"""
import sys, time, torch
from resnetctl.models import create_model
torch.manual_seed(0)
network = torch.compile(create_model(sys.argv[1], num_classes=10))
optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
images = torch.randn(int(sys.argv[2]), 3, 32, 32)
labels = torch.randint(0, 10, (int(sys.argv[2]),))
started = time.monotonic()
torch.nn.functional.cross_entropy(network(images), labels).backward()
optimizer.step()
print(time.monotonic() - started)
"""


def compile_seconds(
    model: str, batch: int, headers: bool, cache: Path, temp: Path
) -> tuple[float, list[str]]:
    """One process's compile of the step; returns its seconds and what it left in `temp`."""
    env = {
        **os.environ,
        "TMPDIR": str(temp),
        "TORCHINDUCTOR_CACHE_DIR": str(cache),
        "TORCHINDUCTOR_CPP_CACHE_PRECOMPILE_HEADERS": "1" if headers else "0",
    }
    done = subprocess.run(
        [sys.executable, "-c", STEP, model, str(batch)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1]), sorted(p.name for p in temp.iterdir())


def main(argv: list[str] | None = None) -> int:
    """Time cold compiles with and without precompiled headers, and a warm one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cifar_resnet20")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)

    times: dict[str, list[float]] = {"headers on": [], "headers off": [], "cache warm": []}
    with tempfile.TemporaryDirectory(prefix="resnetctl-compile-cache-") as work:
        for round_ in range(args.rounds):
            for mode in ("headers on", "headers off"):
                folder = Path(work) / f"{round_}-{mode.replace(' ', '-')}"
                (folder / "tmp").mkdir(parents=True)
                seconds, left = compile_seconds(
                    args.model, args.batch, mode == "headers on", folder / "cache", folder / "tmp"
                )
                times[mode].append(seconds)
                print(f"round {round_ + 1}, {mode}: {seconds:.1f} s; left in temp: {left}")
                if mode == "headers off":
                    (folder / "tmp-warm").mkdir()
                    seconds, left = compile_seconds(
                        args.model, args.batch, False, folder / "cache", folder / "tmp-warm"
                    )
                    times["cache warm"].append(seconds)
                    print(f"round {round_ + 1}, cache warm: {seconds:.1f} s; left in temp: {left}")
    medians = {mode: statistics.median(values) for mode, values in times.items()}
    for mode, median in medians.items():
        print(f"{mode}: median {median:.1f} s")
    print(f"cold compile, headers off / on: {medians['headers off'] / medians['headers on']:.2f}")
    print(f"warm / cold (headers off): {medians['cache warm'] / medians['headers off']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
