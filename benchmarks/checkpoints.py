"""What step checkpoints cost, and how fast a notice becomes a complete checkpoint.

    .venv/bin/python benchmarks/checkpoints.py [--job jobs/quickstart.yaml] [--epochs 4]
        [--every 10] [--rounds 1]

Side by side in one run, each through `resnetctl submit` on the embedded Ray as a user runs it:

1. Throughput: the same job without step checkpoints, with a checkpoint every `--every` steps
   kept on local disk, and the same kept in a bucket on a loopback S3 server (moto): median
   images/s of the epochs after the first, and each checkpointed run's ratio to the plain one
   (target >= 0.98). The checkpoints upload in the background (`checkpoint.upload: async`).
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
    return subprocess.Popen(
        argv,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
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
        raise SystemExit(f"{workdir.name}: submit failed ({process.returncode})")
    summary = json.loads(out)
    per_epoch = _images_per_second(workdir, summary["mlflow_run_id"])
    return {"images_per_second": per_epoch, "seconds": summary["seconds"]}


def _complete_step_checkpoints(storage: str) -> set[str]:
    from resnetctl.storage import StoragePath
    from resnetctl.storage.checkpoints import scan

    found = set()
    for run in StoragePath.of(storage).iterdir():
        for path, verdict in scan(run):
            if verdict and "_step_" in path.name:
                found.add(str(path))
    return found


def _steps_logged(client: Any) -> int:
    experiments = client.search_experiments()
    runs = client.search_runs(experiments[0].experiment_id) if experiments else []
    if not runs:
        return 0
    return len(client.get_metric_history(runs[0].info.run_id, "step_train_loss"))


def notice_to_checkpoint(
    job: str, workdir: Path, storage: str, settings: list[str], after_steps: int
) -> float:
    """Seconds from SIGTERM (sent once `after_steps` steps were logged) to the stop's
    checkpoint being complete in `storage`."""
    from mlflow import MlflowClient

    workdir.mkdir(parents=True)
    process = _submit(job, workdir, storage, [*settings, "train.log_every_n_steps=1"])
    client = None
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{workdir.name}: the job ended before the notice")
            try:
                # The job creates the store's tables: a client opened meanwhile would race it.
                if client is None and (workdir / "mlflow.db").exists():
                    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
                if client is not None and _steps_logged(client) >= after_steps:
                    break
            except Exception:  # noqa: BLE001 - the store is not ready yet: look again
                client = None
            time.sleep(0.2)
        before = _complete_step_checkpoints(storage)
        sent = time.monotonic()
        os.kill(process.pid, signal.SIGTERM)
        while not (_complete_step_checkpoints(storage) - before):
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
                    result = throughput(args.job, work, storage, settings)
                    ips[name] += result["images_per_second"][1:]
                    print(f"round {round_ + 1} {name}: {result}", file=sys.stderr, flush=True)
                for name in ("disk", "bucket"):
                    storage = (
                        runs[name][0].replace("/runs", "/notice")
                        if name == "bucket"
                        else (f"{tmp}/notice-{round_}")
                    )
                    work = Path(tmp) / f"notice-{name}-{round_}"
                    latency[name].append(
                        notice_to_checkpoint(args.job, work, storage, stepped, after_steps=30)
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
        figures = ", ".join(f"{s:.2f}" for s in latency[name])
        print(f"SIGTERM to a complete checkpoint, {name:6s}: {figures} s")
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
