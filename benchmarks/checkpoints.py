"""What step checkpoints cost, and how fast a notice becomes a complete checkpoint.

    .venv/bin/python benchmarks/checkpoints.py [--job jobs/quickstart.yaml] [--epochs 4]
        [--every 10] [--rounds 1]

Side by side in one run, each through `resnetctl submit` on the embedded Ray as a user runs it:

1. Throughput: the same job without step checkpoints, with a checkpoint every `--every` steps
   kept on local disk, and the same kept in a bucket on a loopback S3 server (moto): median
   images/s of the epochs after the first, and each checkpointed run's ratio to the plain one
   (target >= 0.98). The checkpoints upload in the background (`checkpoint.upload: async`).
   On a shared 2-core machine epochs of a few seconds vary by 10 % and more, so the same
   target is also read from the run itself: rank 0 logs how long each step checkpoint held
   training up (`training resumed after S s`), and 1 - (their sum / the epochs' seconds) is
   the throughput kept if the upload beside training cost nothing. The S3 server runs on
   this machine too: the CPU seconds it used during the bucket runs are printed, to tell its
   share of the cores from the checkpoints' own cost.
2. Notice to checkpoint: the job is sent SIGTERM in the middle of its second epoch; the seconds
   from the signal to the stop's checkpoint complete in the storage (its manifest there), on
   disk and in the bucket.

The machine's load (`uptime`) is printed before and after: on a shared machine, compare ratios
measured in one run, not figures from different runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from storage import start_moto  # noqa: E402 (a sibling script)


def _submit(job: str, workdir: Path, storage: str, settings: list[str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "resnetctl", "submit", job, "--json", "--storage", storage]
    for setting in settings:
        argv += ["--set", setting]
    with (workdir / "stderr.txt").open("w") as stderr:  # the child keeps its own copy
        return subprocess.Popen(
            argv,
            cwd=workdir,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,
        )


def _images_per_second(workdir: Path, run_id: str) -> list[float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    history = client.get_metric_history(run_id, "images_per_second")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def throughput(job: str, workdir: Path, storage: str, settings: list[str]) -> dict[str, Any]:
    """Run the job to the end; its per-epoch images/s and the checkpoints it wrote."""
    workdir.mkdir(parents=True)
    process = _submit(job, workdir, storage, settings)
    out, _ = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise SystemExit(
            f"{workdir.name}: submit failed ({process.returncode}):\n"
            + (workdir / "stderr.txt").read_text()[-3000:]
        )
    summary = json.loads(out)
    per_epoch = _images_per_second(workdir, summary["mlflow_run_id"])
    return {
        "images_per_second": per_epoch,
        "seconds": summary["seconds"],
        "train_seconds": sum(_metric(workdir, summary["mlflow_run_id"], "epoch_seconds")),
        "stalls": _stalls(storage, summary["run_name"]),
    }


def _cpu_seconds(pid: int) -> float:
    """User and system CPU seconds process `pid` has used so far."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def _metric(workdir: Path, run_id: str, key: str) -> list[float]:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return [m.value for m in client.get_metric_history(run_id, key)]


#: What rank 0 logs after each step checkpoint (train/loop.py): the seconds training waited.
RESUMED = re.compile(r"checkpoint at step \d+: training resumed after ([\d.]+) s")


def _stalls(storage: str, run_name: str) -> list[float]:
    """The seconds each step checkpoint held training up, from the run's log."""
    from resnetctl.storage import StoragePath

    log = StoragePath.of(storage) / run_name / "resnetctl.log"
    return [float(s) for s in RESUMED.findall(log.read_text())] if log.exists() else []


def _complete_step_checkpoints(storage: str) -> dict[str, int]:
    """Every complete step checkpoint under `storage`, with its global step."""
    from resnetctl.storage import StoragePath
    from resnetctl.storage.checkpoints import scan

    found = {}
    root = StoragePath.of(storage)
    for run in root.iterdir() if root.is_dir() else ():
        for path, verdict in scan(run):
            if verdict and "_step_" in path.name:
                found[str(path)] = int(path.name.rsplit("_step_", 1)[1])
    return found


def notice_to_checkpoint(
    job: str, workdir: Path, storage: str, settings: list[str], after_step: int
) -> float:
    """Seconds from SIGTERM (sent once a step checkpoint at `after_step` or later is complete)
    to the stop's checkpoint being complete in `storage`. The job's own storage is watched, not
    its MLflow store: opening that while the job creates its tables breaks the job's
    migration."""
    workdir.mkdir(parents=True)
    process = _submit(job, workdir, storage, settings)
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(
                    f"{workdir.name}: the job ended before the notice:\n"
                    + (workdir / "stderr.txt").read_text()[-3000:]
                )
            before = _complete_step_checkpoints(storage)
            if any(step >= after_step for step in before.values()):
                break
            time.sleep(0.2)
        sent = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        while not (set(_complete_step_checkpoints(storage)) - set(before)):
            if time.monotonic() - sent > 300:
                raise SystemExit(f"{workdir.name}: no checkpoint 300 s after the notice")
            time.sleep(0.05)
        seconds = time.monotonic() - sent
        process.wait(timeout=300)
        return seconds
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", default=str(ROOT / "jobs" / "quickstart.yaml"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--every", type=int, default=10, help="checkpoint every N steps")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}", flush=True)
    base = [f"train.epochs={args.epochs}", "failure.max_failures=0"]
    stepped = [*base, f"checkpoint.every_n_steps={args.every}"]
    moto, _ = start_moto()
    ips: dict[str, list[float]] = {"none": [], "disk": [], "bucket": []}
    latency: dict[str, list[float]] = {"disk": [], "bucket": []}
    stalled: dict[str, list[float]] = {"none": [], "disk": [], "bucket": []}
    trained: dict[str, float] = {"none": 0.0, "disk": 0.0, "bucket": 0.0}
    server_cpu: dict[str, float] = {"none": 0.0, "disk": 0.0, "bucket": 0.0}
    wall: dict[str, float] = {"none": 0.0, "disk": 0.0, "bucket": 0.0}
    try:
        import boto3

        with tempfile.TemporaryDirectory(prefix="resnetctl-bench-") as tmp:
            os.environ["RESNETCTL_CACHE"] = str(Path(tmp) / "cache")
            for round_ in range(args.rounds):
                bucket = f"bench-{round_}-{os.getpid()}"
                boto3.client("s3").create_bucket(Bucket=bucket)
                runs = {
                    "none": (f"{tmp}/runs-none-{round_}", base),
                    "disk": (f"{tmp}/runs-disk-{round_}", stepped),
                    "bucket": (f"s3://{bucket}/runs", stepped),
                }
                for name, (storage, settings) in runs.items():  # interleaved, one round at a time
                    work = Path(tmp) / f"{name}-{round_}"
                    cpu = _cpu_seconds(moto.pid)
                    result = throughput(args.job, work, storage, settings)
                    result["s3_server_cpu_seconds"] = _cpu_seconds(moto.pid) - cpu
                    server_cpu[name] += result["s3_server_cpu_seconds"]
                    wall[name] += result["seconds"]
                    ips[name] += result["images_per_second"][1:]
                    stalled[name] += result["stalls"]
                    trained[name] += result["train_seconds"]
                    print(f"round {round_ + 1} {name}: {result}", file=sys.stderr, flush=True)
                for name in ("disk", "bucket"):
                    storage = (
                        runs[name][0].replace("/runs", "/notice")
                        if name == "bucket"
                        else (f"{tmp}/notice-{round_}")
                    )
                    work = Path(tmp) / f"notice-{name}-{round_}"
                    latency[name].append(
                        notice_to_checkpoint(args.job, work, storage, stepped, after_step=30)
                    )
    finally:
        os.killpg(moto.pid, signal.SIGKILL)
    plain = statistics.median(ips["none"])
    print(f"job {args.job}: {args.epochs} epochs x {args.rounds} round(s), first epoch excluded")
    print(f"no step checkpoints                     {plain:8.1f} img/s")
    for name in ("disk", "bucket"):
        value = statistics.median(ips[name])
        print(
            f"checkpoint every {args.every} steps, {name:6s}       {value:8.1f} img/s  "
            f"ratio {value / plain:.3f} (target >= 0.98)"
        )
    for name in ("disk", "bucket"):
        waits = stalled[name]
        share = sum(waits) / trained[name] if trained[name] else float("nan")
        print(
            f"step checkpoints, {name:6s}: {len(waits)} written, training waited "
            f"median {statistics.median(waits) if waits else float('nan'):.3f} s, "
            f"max {max(waits, default=float('nan')):.3f} s each; {sum(waits):.1f} s of "
            f"{trained[name]:.0f} s of epochs: ratio {1 - share:.4f} from the waits alone"
        )
    print(
        f"the S3 server (moto, on this machine's {os.cpu_count()} cores beside the training) "
        f"used {server_cpu['bucket']:.1f} CPU s during the bucket runs' {wall['bucket']:.0f} s "
        f"({server_cpu['none']:.1f} s during the runs without step checkpoints)"
    )
    for name in ("disk", "bucket"):
        figures = ", ".join(f"{s:.2f}" for s in latency[name])
        print(f"SIGTERM to a complete checkpoint, {name:6s}: {figures} s")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
