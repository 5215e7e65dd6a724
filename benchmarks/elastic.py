"""End-to-end throughput of an elastic run whose workers go 2 -> 1 -> 2, against a fixed
2-worker run, and the time each resize costs; side by side in one run.

    .venv/bin/python benchmarks/elastic.py [--kill-at 44] [--alone 40]

On a loopback cluster of real `ray start` nodes started here (a head without CPUs, so that no
training worker lands on it, and two one-CPU worker nodes) with an MLflow server, each through
`resnetctl submit --address` as a user runs it:

1. `fixed`: jobs/quickstart.yaml on 2 workers (`workers: 2`).
2. `elastic`: the same with `workers: {min: 1, max: 2}` (`keep_global_batch`): after global step
   `--kill-at` one worker node is killed (SIGKILL of its process group); `--alone` steps later
   a new node joins and the run grows back to 2 workers.

Both log every step and write a step checkpoint every 5 steps. Printed: wall seconds from
submit to the end, the training span (first to last step finished, from the per-step metrics'
timestamps), images per second over it (176 steps x 64 images), the elastic run's ratio to the
fixed one; for each resize the seconds from the event (the kill, the new node) to the first
step trained on the new count, the steps trained again, and the seconds lost against the fixed
run's median step. The machine's load is printed before and after: compare figures measured in
one run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.launch.conftest import (  # noqa: E402 (the suite's loopback cluster)
    Processes,
    mlflow_up,
    start_mlflow,
    two_node_cluster,
)
from tests.processes import kill_group, wait_for  # noqa: E402

STEPS, IMAGES_PER_STEP = 176, 64  # the quickstart: 8 epochs of 22 steps of 64 images
EXPERIMENT = "elastic-benchmark"


def _job(workdir: Path, name: str, workers: Any, mlflow: str) -> Path:
    job = yaml.safe_load((ROOT / "jobs" / "quickstart.yaml").read_text())
    job["name"] = name
    job["resources"]["workers"] = workers
    job["resources"]["resize_check_s"] = 5
    job["train"]["log_every_n_steps"] = 1
    job["checkpoint"]["every_n_steps"] = 5
    job["failure"]["max_failures"] = 4
    job["tracking"] = {"experiment": EXPERIMENT, "uri": mlflow}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def _submit(path: Path, dashboard: str, storage: Path) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "resnetctl", "submit", str(path), "--json"]
    argv += ["--address", dashboard, "--storage", str(storage)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return subprocess.Popen(
        argv,
        cwd=path.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def _history(client: Any, name: str, key: str) -> list[Any]:
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`resnetctl.job` = '{name}'"
    )
    return client.get_metric_history(runs[0].info.run_id, key) if runs else []


def _workers(client: Any, name: str) -> list[tuple[int, float, float]]:
    """(step, workers, Unix seconds it finished) of every logged step, by time."""
    rows = [(m.step, m.value, m.timestamp / 1000) for m in _history(client, name, "workers")]
    return sorted(rows, key=lambda row: row[2])


def _span(rows: list[tuple[int, float, float]]) -> float:
    return rows[-1][2] - rows[0][2]


def _run(process: subprocess.Popen[str], started: float) -> float:
    out, _ = process.communicate(timeout=1800)
    if process.returncode != 0:
        raise SystemExit(f"submit failed ({process.returncode}): {out[-2000:]}")
    if json.loads(out).get("state") != "SUCCEEDED":
        raise SystemExit(out[-2000:])
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kill-at", type=int, default=44, help="global step of the node loss")
    parser.add_argument("--alone", type=int, default=40, help="steps on one worker")
    args = parser.parse_args()
    from mlflow import MlflowClient

    print(f"load before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="elastic-bench-") as temp:
        work = Path(temp)
        # A Ray token of this cluster's own, inherited by its nodes and the submits: the
        # user's ~/.ray is neither needed nor touched.
        token = work / "auth_token"
        token.write_text(secrets.token_hex(32))
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(token)
        server = Processes(work)
        try:
            mlflow = start_mlflow(server, work, str(work / "artifacts"))
            mlflow_up(mlflow, work)
            with two_node_cluster(work, head_cpus=0) as nodes:
                nodes.add_worker("worker2")
                nodes.wait_for_nodes(3)
                client = MlflowClient(mlflow)
                results = _measure(args, work, nodes, mlflow, client)
        finally:
            server.stop()
    print(f"load after: {os.getloadavg()[0]:.2f}")
    _print(results)


def _measure(args: argparse.Namespace, work: Path, nodes: Any, mlflow: str, client: Any) -> dict:
    storage = work / "storage"
    started = time.monotonic()
    fixed_wall = _run(_submit(_job(work, "fixed", 2, mlflow), nodes.dashboard, storage), started)
    fixed = _workers(client, "fixed")

    elastic_job = _job(work, "elastic", {"min": 1, "max": 2}, mlflow)
    started = time.monotonic()
    process = _submit(elastic_job, nodes.dashboard, storage)
    try:

        def past(step: int, workers: int, after: float = 0.0) -> bool:
            if process.poll() is not None:
                raise SystemExit("the elastic run ended early")
            rows = _workers(client, "elastic")
            return any(s >= step and w == workers and t > after for s, w, t in rows)

        if not wait_for(lambda: past(args.kill_at, 2), 900, interval=0.5):
            raise SystemExit(f"step {args.kill_at} not reached")
        nodes.kill_worker("worker2")
        killed = time.time()
        if not wait_for(lambda: past(0, 1, killed), 600, interval=0.5):
            raise SystemExit("the run did not go on with one worker")
        alone_from = min(s for s, w, t in _workers(client, "elastic") if w == 1)
        if not wait_for(lambda: past(alone_from + args.alone, 1), 900, interval=0.5):
            raise SystemExit("the run did not train on one worker")
        nodes.add_worker("worker3")
        joined = time.time()
        elastic_wall = _run(process, started)
    finally:
        kill_group(process)
    elastic = _workers(client, "elastic")
    return {"fixed": (fixed_wall, fixed), "elastic": (elastic_wall, elastic), "events": {
        "node lost (2 -> 1)": killed,
        "node joined (1 -> 2)": joined,
    }}


def _print(results: dict) -> None:
    fixed_wall, fixed = results["fixed"]
    elastic_wall, elastic = results["elastic"]
    step = statistics.median(b[2] - a[2] for a, b in zip(fixed, fixed[1:], strict=False))
    print()
    print("| run | workers | wall s | training s | img/s over training | ratio to fixed |")
    print("|---|---|---:|---:|---:|---:|")
    fixed_rate = STEPS * IMAGES_PER_STEP / _span(fixed)
    for name, wall, rows, workers in (
        ("fixed", fixed_wall, fixed, "2"),
        ("elastic", elastic_wall, elastic, "2 -> 1 -> 2"),
    ):
        rate = STEPS * IMAGES_PER_STEP / _span(rows)
        print(
            f"| {name} | {workers} | {wall:.0f} | {_span(rows):.0f} | {rate:.0f} | "
            f"{rate / fixed_rate:.2f} |"
        )
    print()
    print(f"fixed run's median step: {step:.2f} s")
    print(
        "| resize | s from event to first step on the new count | s without a step "
        "| steps trained again | s lost (idle - 1 step + redone steps) |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, at in results["events"].items():
        count = 1 if "2 -> 1" in name else 2
        first = next(r for r in elastic if r[2] > at and r[1] == count)
        prior = [r for r in elastic if r[2] < first[2]]
        done = max(s for s, _, _ in prior)
        redone = len([r for r in elastic if r[2] >= first[2] and r[0] <= done])
        idle = first[2] - prior[-1][2]
        lost = idle - step + redone * step
        print(f"| {name} | {first[2] - at:.0f} | {idle:.0f} | {redone} | {lost:.0f} |")
    ones = [b[2] - a[2] for a, b in zip(elastic, elastic[1:], strict=False) if a[1] == b[1] == 1]
    if ones:
        print(f"elastic run's median step on one worker: {statistics.median(ones):.2f} s")


if __name__ == "__main__":
    main()
