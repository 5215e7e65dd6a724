"""An elastic run (`resources.workers: {min: 1, max: 2}`) on a loopback cluster of real `ray
start` nodes: a head without CPUs (so no training worker lands there) and two one-CPU worker
nodes. The quickstart trains undisturbed once, for reference; then again, and in the middle of
the run one worker node is killed (its raylet and everything under it): the run goes on with
the one worker left without waiting for a replacement, grows back to two workers when a new
node joins, and finishes. With `keep_global_batch` every optimiser step, on either count, trains
the plan's 64 images at the plan's rate (read back from the per-step metrics in MLflow), and the
run ends at the quickstart's accuracy. What the fault cost (steps trained again, seconds) is
counted and compared with the undisturbed run.

On the same cluster, a one-worker run whose worker process is killed until one node has lost
it twice: that node is excluded from the rest of the run (`failure.exclude_node_after`)."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import JOBS
from tests.launch.conftest import (
    Processes,
    RayNodes,
    mlflow_up,
    ray_list,
    start_mlflow,
    two_node_cluster,
)
from tests.processes import wait_for

pytestmark = pytest.mark.slow

EXPERIMENT = "elastic"
STEPS_PER_EPOCH, EPOCHS = 22, 8  # the quickstart: 1,437 images, 64 a step
TOTAL = STEPS_PER_EPOCH * EPOCHS


@dataclass
class ElasticCluster:
    nodes: RayNodes
    mlflow: str
    logs: Path


@pytest.fixture(scope="module")
def elastic_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ElasticCluster]:
    """An MLflow server, a head with no CPUs and two one-CPU worker nodes ("worker",
    "worker2"), all on 127.0.0.1; every process killed by process group afterwards."""
    logs = tmp_path_factory.mktemp("elastic-cluster")
    server = Processes(logs)
    try:
        mlflow = start_mlflow(server, logs, str(logs / "artifacts"))
        mlflow_up(mlflow, logs)
        with two_node_cluster(logs, head_cpus=0) as nodes:
            nodes.add_worker("worker2")
            nodes.wait_for_nodes(3)
            yield ElasticCluster(nodes, mlflow, logs)
    finally:
        server.stop()


def elastic_quickstart(cluster: ElasticCluster, workdir: Path, name: str) -> None:
    """jobs/quickstart.yaml on 1 to 2 workers, a step checkpoint every 5 steps, every step's
    metrics logged, resizes considered every 5 s."""
    job = yaml.safe_load((JOBS / "quickstart.yaml").read_text())
    job["name"] = name
    job["resources"].update(
        {"workers": {"min": 1, "max": 2}, "elastic_policy": "keep_global_batch"}
    )
    job["resources"]["resize_check_s"] = 5
    job["train"]["log_every_n_steps"] = 1
    job["checkpoint"]["every_n_steps"] = 5
    job["failure"]["max_failures"] = 4
    job["tracking"] = {"experiment": EXPERIMENT, "uri": cluster.mlflow}
    (workdir / f"{name}.yaml").write_text(yaml.safe_dump(job))


def planned_lr(step: int) -> float:
    """The quickstart's rate at global step `step` (1-based, as logged): peak 0.2 x 64 / 128,
    linear warm-up from a tenth over 20 steps, then a cosine to 0 at the end of the run."""
    index, peak, warm = step - 1, 0.2 * 64 / 128, 20
    factor = 0.1 + 0.9 * index / warm if index < warm else 1.0
    cosine = 0.5 * (1 + math.cos(math.pi * max(0, index - warm) / (TOTAL - warm)))
    return peak * cosine * factor


def run_of(client, name: str):  # noqa: ANN001, ANN201 - an MlflowClient, a Run or None
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`resnetctl.job` = '{name}'"
    )
    return runs[0] if runs else None


def steps_at(client, run_id: str, workers: int, after: float = 0.0) -> list[int]:  # noqa: ANN001
    """The global steps logged with `workers` workers (finished after Unix time `after`), in
    order."""
    return sorted(
        m.step
        for m in client.get_metric_history(run_id, "workers")
        if m.value == workers and m.timestamp / 1000 > after
    )


def first_time(client, run_id: str, workers: int, after: float) -> float:  # noqa: ANN001
    """When the first step with `workers` workers finished after Unix time `after`."""
    return min(
        m.timestamp / 1000
        for m in client.get_metric_history(run_id, "workers")
        if m.value == workers and m.timestamp / 1000 > after
    )


def test_an_elastic_run_shrinks_on_a_lost_node_grows_back_and_keeps_the_plan(
    elastic_cluster: ElasticCluster, submit, workdir: Path
) -> None:
    from mlflow import MlflowClient

    nodes = elastic_cluster.nodes
    client = MlflowClient(elastic_cluster.mlflow)
    storage = str(elastic_cluster.logs / "storage")
    args = ["--json", "--address", nodes.dashboard, "--storage", storage]

    # 1. Undisturbed, for reference.
    elastic_quickstart(elastic_cluster, workdir, "steady")
    started = time.monotonic()
    code, out, err = submit("steady.yaml", *args).wait(timeout=900)
    steady_seconds = time.monotonic() - started
    assert code == 0, err[-4000:]
    steady = run_of(client, "steady")
    assert steady is not None
    assert steps_at(client, steady.info.run_id, 2) == list(range(1, TOTAL + 1))

    # 2. A worker node lost at about a quarter of the run, a new one joining later.
    elastic_quickstart(elastic_cluster, workdir, "shaken")
    started = time.monotonic()
    job = submit("shaken.yaml", *args)
    run: list = []

    def reached(step: int, workers: int) -> bool:
        assert job.process.poll() is None, job.stderr.read_text()[-4000:]
        if not run:
            found = run_of(client, "shaken")
            if found is None:
                return False
            run.append(found)
        return any(s >= step for s in steps_at(client, run[0].info.run_id, workers))

    assert wait_for(lambda: reached(40, 2), 600, interval=1), job.stderr.read_text()[-4000:]
    run_id = run[0].info.run_id
    nodes.kill_worker("worker2")
    killed_at = time.time()
    killed_after = max(steps_at(client, run_id, 2))
    # One worker goes on: no replacement has been started yet.
    assert wait_for(lambda: steps_at(client, run_id, 1), 300, interval=1), job.stderr.read_text()[
        -4000:
    ]
    shrunk_seconds = first_time(client, run_id, 1, killed_at) - killed_at
    first_alone = min(steps_at(client, run_id, 1))
    assert wait_for(lambda: reached(first_alone + 10, 1), 300, interval=1)
    nodes.add_worker("worker3")
    joined_at = time.time()
    grown = lambda: steps_at(client, run_id, 2, after=joined_at)  # noqa: E731
    assert wait_for(grown, 300, interval=1), job.stderr.read_text()[-4000:]
    grown_seconds = first_time(client, run_id, 2, joined_at) - joined_at
    code, out, err = job.wait(timeout=900)
    shaken_seconds = time.monotonic() - started
    assert code == 0, err[-4000:]
    assert json.loads(out)["state"] == "SUCCEEDED"

    final = client.get_run(run_id)
    assert final.info.status == "FINISHED"
    # Every step of the plan was trained, by two workers, then one, then two again.
    two, one = steps_at(client, run_id, 2), steps_at(client, run_id, 1)
    assert sorted(set(two) | set(one)) == list(range(1, TOTAL + 1))
    assert min(two) == 1 and 1 < min(one) and max(one) < TOTAL and max(two) == TOTAL
    # At every step, on either count, the plan's 64 images and rate.
    for m in client.get_metric_history(run_id, "step_global_batch"):
        assert m.value == 64, m.step
    for m in client.get_metric_history(run_id, "step_lr"):
        assert m.value == pytest.approx(planned_lr(m.step), rel=1e-9, abs=1e-12), m.step
    # A tag per resize, in MLflow.
    tags = final.data.tags
    assert "2 -> 1 workers (64 images per step, peak lr 0.1)" in tags["resnetctl.resize.1"]
    assert "1 -> 2 workers (64 images per step, peak lr 0.1)" in tags["resnetctl.resize.2"]
    assert final.data.metrics["resizes"] == 2
    # The quickstart's accuracy (99.2-100 % undisturbed).
    assert final.data.metrics["val_top1_error_pct"] <= 3.0, final.data.metrics
    assert steady.data.metrics["val_top1_error_pct"] <= 3.0, steady.data.metrics

    # What the fault cost: steps trained twice (logged twice), seconds beside the steady run.
    trained = len(client.get_metric_history(run_id, "step_lr"))
    redone = trained - TOTAL
    assert redone == final.data.metrics["steps_redone"]
    # Each restart goes back to the last step checkpoint: fewer than 5 steps each, plus the
    # steps the lost node's last seconds trained past it.
    assert 0 <= redone <= 2 * 5 + 5, redone
    report = {
        "steady_seconds": round(steady_seconds),
        "shaken_seconds": round(shaken_seconds),
        "seconds_lost": round(shaken_seconds - steady_seconds),
        "steps_redone": redone,
        "killed_after_step": killed_after,
        "seconds_to_go_on_with_one_worker": round(shrunk_seconds),
        "seconds_to_grow_back": round(grown_seconds),
        "steady_val_error_pct": steady.data.metrics["val_top1_error_pct"],
        "shaken_val_error_pct": final.data.metrics["val_top1_error_pct"],
    }
    print(f"elastic fault cost: {json.dumps(report)}")
    for line in err.splitlines():  # the terminal's account of the faults, for the record
        if any(word in line for word in ("failed", "resized", "restarted")):
            print(f"  {line}")
    log = next(Path(storage).glob("shaken-*/resnetctl.log"), None)  # the run's folder
    for line in log.read_text().splitlines() if log else []:  # Ray Train's decisions
        if any(word in line for word in ("Deciding", "Detected", "restored the checkpoint")):
            print(f"  log: {line[:200]}")
    # Losing a node costs a restart, not the run. The budget: Ray Train 2.60 first retries with
    # as many workers as before while the node is not yet marked dead, until its worker-group
    # start timeout (60 s); then two restarts (about 20 s each here) and the slower steps of the
    # one-worker stretch.
    assert shaken_seconds - steady_seconds < 240, report


def train_workers(cluster: ElasticCluster) -> list[dict]:
    """The alive Ray Train workers of the cluster, as `ray list actors` reports them."""
    return ray_list(cluster.nodes.gcs, "actors", "state=ALIVE", "class_name=RayTrainWorker")


def test_a_node_whose_worker_dies_twice_is_excluded_from_the_rest_of_the_run(
    elastic_cluster: ElasticCluster, submit, workdir: Path
) -> None:
    """One worker, two one-CPU nodes: the worker's process is SIGKILLed wherever it runs until
    one node has lost it twice. That node is named (log, terminal, MLflow) and no worker of
    the run starts on it again although it has room; the run finishes, every step trained
    again after a restart has the loss it had the first time (the resume is exact), and what
    the kills cost is counted."""
    from mlflow import MlflowClient

    nodes = elastic_cluster.nodes
    client = MlflowClient(elastic_cluster.mlflow)
    storage = str(elastic_cluster.logs / "storage-badnode")
    elastic_quickstart(elastic_cluster, workdir, "badnode")
    job = yaml.safe_load((workdir / "badnode.yaml").read_text())
    job["resources"]["workers"] = 1
    job["resources"].pop("elastic_policy")
    job["resources"].pop("resize_check_s")
    (workdir / "badnode.yaml").write_text(yaml.safe_dump(job))
    started = time.monotonic()
    submitted = submit("badnode.yaml", "--json", "--address", nodes.dashboard, "--storage", storage)
    run: list = []

    def logged() -> int:
        assert submitted.process.poll() is None, submitted.stderr.read_text()[-4000:]
        if not run:
            found = run_of(client, "badnode")
            if found is None:
                return 0
            run.append(found)
        return len(client.get_metric_history(run[0].info.run_id, "step_lr"))

    kills: dict[str, int] = {}
    killed_pids: set[int] = set()
    kill_times: list[float] = []
    fresh: list[dict] = []
    seen = [0]  # steps logged at the last kill

    def running() -> bool:
        """The group runs: a worker not killed yet, and steps logged since the last kill."""
        alive = train_workers(elastic_cluster)
        fresh[:] = [a for a in alive if a["pid"] not in killed_pids]
        # 8 steps: a step checkpoint (every 5) lies between two kills, so every restart
        # restores one.
        return bool(fresh) and logged() >= seen[0] + 8

    while max(kills.values(), default=0) < 2:
        assert wait_for(running, 300, interval=1), submitted.stderr.read_text()[-4000:]
        victim = fresh[0]
        os.kill(victim["pid"], signal.SIGKILL)
        kill_times.append(time.time())
        killed_pids.add(victim["pid"])
        kills[victim["node_id"]] = kills.get(victim["node_id"], 0) + 1
        seen[0] = logged()
    bad = next(node for node, count in kills.items() if count == 2)

    # From now on the run's workers start elsewhere only, though the bad node is free.
    elsewhere: set[int] = set()
    while submitted.process.poll() is None:
        for actor in train_workers(elastic_cluster):
            assert actor["node_id"] != bad, (actor, kills)
            elsewhere.add(actor["pid"])
        time.sleep(1)
    code, out, err = submitted.wait(timeout=60)
    seconds = time.monotonic() - started
    assert code == 0, err[-4000:]
    assert json.loads(out)["state"] == "SUCCEEDED"
    assert elsewhere - killed_pids, "no worker was seen running after the exclusion"
    assert any(node["node_id"] == bad for node in nodes.alive_nodes())  # still up, unused

    # Named in the run's log, on the terminal and in MLflow.
    said = re.search(rf"node {bad[:8]} \([\d.]+\) excluded from this run: .*", err)
    assert said is not None, err[-4000:]
    log = next(Path(storage).glob("badnode-*/resnetctl.log"))
    assert f"node id {bad}" in log.read_text()
    final = client.get_run(run[0].info.run_id)
    assert final.data.tags["resnetctl.excluded_node.1"] == said.group(0)
    assert final.data.metrics["excluded_nodes"] == 1
    assert final.data.metrics["restarts"] == len(kill_times)

    # Every step trained, those trained twice with the same loss (exact resume), and the cost.
    losses: dict[int, list[float]] = {}
    for m in client.get_metric_history(final.info.run_id, "step_train_loss"):
        losses.setdefault(m.step, []).append(m.value)
    assert sorted(losses) == list(range(1, TOTAL + 1))
    for step, values in losses.items():
        assert values == [values[0]] * len(values), (step, values)
    redone = sum(len(values) - 1 for values in losses.values())
    assert redone == final.data.metrics["steps_redone"]
    # A step checkpoint every 5 steps; one still uploading when its worker died is not one.
    assert redone <= len(kill_times) * 2 * 5, redone
    assert final.data.metrics["val_top1_error_pct"] <= 3.0, final.data.metrics
    restart = [m.value for m in client.get_metric_history(final.info.run_id, "restart_seconds")]
    print(
        "bad node: "
        + json.dumps(
            {
                "kills": len(kill_times),
                "steps_redone": redone,
                "restart_seconds": [round(s, 1) for s in restart],
                "run_seconds": round(seconds),
            }
        )
    )
