"""What each way of serving the MLflow UI costs: processes and memory of its process tree.

    .venv/bin/python benchmarks/ui_footprint.py [--store sqlite:///mlflow.db] [--settle 20]

Starts each candidate on a free loopback port against the store (default: a new one in a
temporary folder with one run), waits until its REST API answers, lets it settle, then counts
the processes of its tree and sums their resident memory (psutil), and checks that it serves
what a review needs: the run, its datasets, logged models and the Model Registry. Each server
is killed by its process group before the next starts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil

# name -> (mlflow sub-command, extra environment)
CANDIDATES: dict[str, tuple[str, dict[str, str]]] = {
    "mlflow server (before: resnetctl ui)": ("server", {}),
    "mlflow ui": ("ui", {}),
    "mlflow server, MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false (resnetctl ui)": (
        "server",
        {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    ),
}

# What the review reads, as REST calls the UI makes (POST with a JSON body, or GET).
ENDPOINTS = {
    # The runs table and the run page; a run's datasets come with it (`inputs`).
    "runs": ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["{experiment}"]}),
    "models": (
        "POST",
        "/api/2.0/mlflow/logged-models/search",
        {"experiment_ids": ["{experiment}"]},
    ),
    "registry": ("GET", "/api/2.0/mlflow/registered-models/search", None),
}


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(base: str, method: str, path: str, body: dict | None) -> int:
    """The HTTP status of one REST call (0: no answer)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            response.read()
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants still alive."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_mb(processes: list[psutil.Process]) -> float:
    """Summed resident memory in MB (shared pages count once per process, as `ps` shows)."""
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def sample_store(folder: Path) -> tuple[str, str]:
    """A sqlite store with one finished run that has metrics: (URI, experiment id)."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("bench", artifact_location=(folder / "art").as_uri())
    run = client.create_run(experiment, run_name="bench-run").info.run_id
    for epoch in range(1, 4):
        client.log_metric(run, "val_top1_error", 30.0 / epoch, step=epoch)
    client.set_terminated(run)
    return uri, experiment


def measure(
    name: str, command: str, env: dict[str, str], store: str, experiment: str, settle: float
) -> dict:
    """Start one candidate, measure it and kill its process group."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "mlflow", command, "--backend-store-uri", store]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    started = time.monotonic()
    server = subprocess.Popen(
        argv,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        ready = None
        while time.monotonic() - started < 120 and server.poll() is None:
            if call(base, "GET", "/health", None) == 200:
                ready = time.monotonic() - started
                break
            time.sleep(0.5)
        time.sleep(settle)  # job runners and consumers start after the API answers
        processes = tree(server.pid)
        served = {}
        for what, (method, path, body) in ENDPOINTS.items():
            text = json.dumps(body).replace("{experiment}", experiment) if body else None
            served[what] = call(base, method, path, json.loads(text) if text else None)
        return {
            "candidate": name,
            "ready_s": ready,
            "processes": len(processes),
            "rss_mb": rss_mb(processes),
            "http": served,
        }
    finally:
        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", help="tracking store; default: a new one with one run")
    parser.add_argument("--experiment", default="0", help="experiment id to query (--store)")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds after ready")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ui-footprint-") as tmp:
        store, experiment = (args.store, args.experiment) if args.store else sample_store(Path(tmp))
        print(f"{'candidate':<75} {'ready s':>8} {'procs':>6} {'RSS MB':>8}  HTTP")
        for name, (command, env) in CANDIDATES.items():
            row = measure(name, command, env, store, experiment, args.settle)
            http = " ".join(f"{k}={v}" for k, v in row["http"].items())
            ready = f"{row['ready_s']:.1f}" if row["ready_s"] is not None else "never"
            print(f"{name:<75} {ready:>8} {row['processes']:>6} {row['rss_mb']:>8.0f}  {http}")


if __name__ == "__main__":
    main()
