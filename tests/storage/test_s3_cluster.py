"""The quickstart on the two-node cluster with its runs, data and MLflow artifacts in a bucket,
through the failures a cluster of spot instances sees: one run loses a training worker
(SIGKILL), then a whole worker node (its raylet and everything under it), whose replacement
joins with `ray start --address`. Each time Ray Train restarts the worker group
(`failure.max_failures`) from the bucket's last checkpoint at the next epoch; every epoch is
logged once, the run ends at the quickstart's accuracy, and everything it wrote is in the
bucket, nothing in local run storage. The same run is then read as a reviewer reads it off the
MLflow server's REST API (names, description, source, summary metrics, system metrics of each
node, datasets, the logged and registered model) and through `resnetctl list`."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import JOBS
from tests.launch.conftest import RayNodes, ray_list, resnetctl
from tests.processes import wait_for
from tests.storage.conftest import S3Cluster, export_data

pytestmark = pytest.mark.slow

EPOCHS = 8  # the quickstart's
EXPERIMENT = "s3-cluster"


def quickstart_in_bucket(cluster: S3Cluster, workdir: Path) -> None:
    """jobs/quickstart.yaml with the digits read from the bucket, tracked on the cluster's
    MLflow server, and room for two restarts (the worker, then the node)."""
    job = yaml.safe_load((JOBS / "quickstart.yaml").read_text())
    data = export_data(job["data"], cluster.bucket, "digits")
    job["data"]["source"] = {"kind": "imagefolder", "root": data}
    job["tracking"] = {"experiment": EXPERIMENT, "uri": cluster.mlflow}
    job["failure"]["max_failures"] = 2
    # A sample every 2 s: the replacement node, up for the last epochs only, reports too.
    job["tracking"]["system_metrics_interval_s"] = 2
    assert job["train"]["epochs"] == EPOCHS and job["resources"]["workers"] == 2
    (workdir / "job.yaml").write_text(yaml.safe_dump(job))


def logged_epochs(client) -> list[int]:  # noqa: ANN001 (an MlflowClient)
    """The epochs the job's MLflow run has a validation error for, in order; [] before it
    exists."""
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    if not runs:
        return []
    history = client.get_metric_history(runs[0].info.run_id, "val_top1_error_pct")
    return sorted(m.step for m in history)


def wait_for_epoch(client, epoch: int, job, timeout: float) -> None:  # noqa: ANN001
    def reached() -> bool:
        assert job.process.poll() is None, job.stderr.read_text()[-3000:]
        return max(logged_epochs(client), default=0) >= epoch

    assert wait_for(reached, timeout, interval=1), f"epoch {epoch} not logged in {timeout}s"


FAILED = re.compile(r"^workers? failed \(ranks? [\d, ]+\): ", re.M)


def wait_for_failures(job, count: int, timeout: float = 180) -> None:  # noqa: ANN001
    """Wait until the terminal has shown `count` worker-group failures. The controller logs an
    epoch to MLflow before it handles a failure that came after it, so from then on the epochs
    logged are all that the failed group finished."""
    assert wait_for(
        lambda: len(FAILED.findall(job.stderr.read_text())) >= count, timeout, interval=1
    ), job.stderr.read_text()[-3000:]


def kill_train_worker(nodes: RayNodes, node_id: str) -> int:
    """SIGKILL the Ray Train worker process on node `node_id`, found by Ray's state API; returns
    its PID."""
    workers = [
        actor
        for actor in ray_list(nodes.gcs, "actors", "class_name=RayTrainWorker", "state=ALIVE")
        if actor["node_id"] == node_id
    ]
    assert len(workers) == 1, workers
    pid = int(workers[0]["pid"])
    # Ours: a process of the worker node's session, which this test started.
    assert os.getsid(pid) == nodes.workers["worker"].pid
    os.kill(pid, signal.SIGKILL)
    return pid


def wait_for_replacement(nodes: RayNodes, head: str, lost: str, timeout: float = 120) -> str:
    """The id of the node that joined in place of `lost`, once Ray sees exactly the head and
    it alive (Ray marks the lost node dead by missed health checks, some seconds on)."""
    alive: list[str] = []

    def replaced() -> bool:
        alive[:] = [n["node_id"] for n in nodes.alive_nodes()]
        return len(alive) == 2 and head in alive and lost not in alive

    assert wait_for(replaced, timeout, interval=2), f"alive nodes: {alive}"
    return next(node for node in alive if node != head)


def test_a_run_in_the_bucket_survives_a_killed_worker_and_a_lost_node(
    s3_cluster: S3Cluster, submit, workdir: Path
) -> None:
    from mlflow import MlflowClient

    nodes, bucket = s3_cluster.nodes, s3_cluster.bucket
    quickstart_in_bucket(s3_cluster, workdir)
    client = MlflowClient(s3_cluster.mlflow)
    (head,) = [n["node_id"] for n in nodes.alive_nodes() if n["is_head_node"]]
    (second,) = [n["node_id"] for n in nodes.alive_nodes() if not n["is_head_node"]]
    storage = f"s3://{bucket}/runs"
    timings: dict[str, float] = {}
    started = time.monotonic()
    job = submit("job.yaml", "--json", "--address", nodes.dashboard, "--storage", storage)

    # 1. A training worker SIGKILLed in the middle of epoch 3, on the second node.
    wait_for_epoch(client, 2, job, timeout=420)
    timings["epoch 2 logged"] = time.monotonic() - started
    queues = ray_list(nodes.gcs, "actors", "class_name=_QueueActor", "state=ALIVE")
    assert queues and {q["node_id"] for q in queues} == {head}  # survives losing `second`
    kill_train_worker(nodes, second)
    wait_for_failures(job, 1)
    worker_lost_after = max(logged_epochs(client))

    # 2. After the restart has logged an epoch: the whole second node lost, then replaced.
    wait_for_epoch(client, worker_lost_after + 1, job, timeout=300)
    timings["worker group restarted"] = time.monotonic() - started
    nodes.kill_worker("worker")
    assert nodes.workers["worker"].poll() is not None
    wait_for_failures(job, 2)
    node_lost_after = max(logged_epochs(client))
    nodes.add_worker("replacement")
    replacement = wait_for_replacement(nodes, head, second)
    timings["replacement joined"] = time.monotonic() - started

    code, out, err = job.wait(timeout=600)
    timings["job finished"] = time.monotonic() - started
    print(f"timings (s): {json.dumps({k: round(v) for k, v in timings.items()})}")
    assert code == 0, err[-4000:]
    result = json.loads(out)
    assert result["state"] == "SUCCEEDED"
    run_name = result["job_id"]
    (run,) = client.search_runs(
        [client.get_experiment_by_name(EXPERIMENT).experiment_id],
        filter_string=f"tags.`resnetctl.run_name` = '{run_name}'",
    )
    assert run.info.status == "FINISHED"
    # `--json` of a cluster job carries the run summary a local `submit --json` prints.
    assert result["succeeded"] and result["run_name"] == run_name
    assert result["mlflow_run_id"] == run.info.run_id and result["epochs_completed"] == EPOCHS
    assert result["startup_seconds"] > 0 and "best_val_top1_error_pct" in result["metrics"]
    assert result["storage_path"] == f"{storage}/{run_name}"

    # Both restarts: from the bucket's checkpoint of the last logged epoch, at the next epoch.
    log = s3_cluster.s3.read(bucket, f"runs/{run_name}/resnetctl.log")  # kept in the bucket
    assert_resumed_at_the_next_epoch(
        log, f"{storage}/{run_name}", [worker_lost_after, node_lost_after]
    )
    assert len(FAILED.findall(err)) == 2, err[-4000:]  # one failure per loss, no more
    # Every epoch logged once, none lost, none twice.
    for metric in ("val_top1_error_pct", "train_loss"):
        history = client.get_metric_history(run.info.run_id, metric)
        assert sorted(m.step for m in history) == list(range(1, EPOCHS + 1)), metric
    # The last epochs ran on the head and the replacement node, one worker each.
    assert sorted(run.data.tags["ray.worker_nodes"].split(",")) == sorted([head, replacement])
    # The quickstart's accuracy (99.4-100 % when uninterrupted): the restarts cost nothing.
    assert run.data.metrics["val_top1_error_pct"] <= 3.0, run.data.metrics

    assert_everything_in_the_bucket(s3_cluster, run_name, run.info.run_id, workdir)
    assert_clean_stream(err, log)
    assert_reviewable(client, run, workdir, nodes=[head, second, replacement])
    listed = resnetctl("list", "--json", "--address", nodes.dashboard, cwd=workdir)
    rows = {row["job_id"]: row for row in json.loads(listed.stdout)}
    assert rows[run_name]["state"] == "SUCCEEDED"
    assert rows[run_name]["mlflow_run"] == run.info.run_id


def assert_clean_stream(err: str, log: str) -> None:
    """The job's logs, followed on stderr, are the clean stream: one line per epoch (each once,
    through both restarts) and the next commands; Ray's lines are in the run's log."""
    assert re.findall(rf"^epoch (\d+)/{EPOCHS}  train error", err, re.M) == [
        str(epoch) for epoch in range(1, EPOCHS + 1)
    ], err[-4000:]
    assert "Reporting training result" not in err and "\x1b[" not in err
    assert "resnetctl status " in err
    assert f"Reporting training result {EPOCHS}" in log


def assert_reviewable(client, run, workdir: Path, nodes: list[str]) -> None:  # noqa: ANN001
    """What a reviewer reads off the MLflow server (its REST API, through MlflowClient) about
    the run of a job submitted to the cluster: identity, provenance, summary, system metrics of
    every node that trained, datasets, the logged and registered model."""
    import getpass

    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.run_name == tags["resnetctl.run_name"]  # the name `list` prints
    spec = yaml.safe_load((workdir / "job.yaml").read_text())
    assert tags["mlflow.note.content"] == spec["description"]  # Description
    # Source and Created by: the submitter's spec file and user, not the head node's.
    assert tags["mlflow.source.name"] == str(workdir / "job.yaml")
    assert tags["mlflow.user"] == getpass.getuser()
    shown = {k: tags[k] for k in ("model", "depth", "shortcut", "data", "workers", "device")}
    assert shown == {
        "model": "cifar_resnet20",
        "depth": "20",
        "shortcut": "A",
        "data": "digits",  # the image folder's name in the bucket
        "workers": "2",
        "device": "cpu",
    }
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "mlflow.sharedViewState.resnetctl" in experiment.tags  # the runs table's columns
    # Summary metrics, at the last epoch.
    errors = {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_top1_error_pct")
    }
    best = int(metrics["best_epoch"])
    assert metrics["best_val_top1_error_pct"] == errors[best] == min(errors.values())
    assert metrics["final_val_top1_acc_pct"] == pytest.approx(100 - errors[EPOCHS])
    assert 0 < metrics["startup_seconds"] < metrics["total_seconds"]
    assert metrics["model_parameters"] > 0 and metrics["model_multiply_adds"] > 0
    assert {"data_wait_seconds", "compute_seconds"} <= set(metrics)
    # System metrics of each node the workers ran on (the lost one too), under its label.
    per_node = {key.split("/")[1] for key in metrics if key.startswith("system/node-")}
    assert per_node == {f"node-{node[:8]}" for node in nodes}, sorted(metrics)
    for node in per_node:
        assert f"system/{node}/cpu_utilization_percentage" in metrics
    # The datasets trained and validated on: the bundled digits, all 1,797, in the bucket.
    inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["digits/train", "digits/val"]
    profiles = [json.loads(inputs[name].profile) for name in sorted(inputs)]
    assert [p["num_classes"] for p in profiles] == [10, 10]
    assert sum(p["num_images"] for p in profiles) == 1797
    # The logged model is the best epoch's; its version is registered and, the first in this
    # store, holds the alias.
    (output,) = client.get_run(run.info.run_id).outputs.model_outputs
    assert output.step == best
    (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert version.name == "quickstart" and version.tags["resnetctl.epoch"] == str(best)
    assert client.get_model_version_by_alias("quickstart", "best").version == version.version


def assert_resumed_at_the_next_epoch(log: str, run: str, epochs: list[int]) -> None:
    """Each restart restored the checkpoint of `epochs[i]` in the bucket (`run`: the run's URI)
    and continued at the next epoch: rank 0 says so in the run's log, once per restart."""
    restored = re.findall(r"Ray Train restored the checkpoint (\S+)", log)
    assert restored == [f"{run}/epoch_{epoch:04d}" for epoch in epochs], log[-4000:]
    resumed = re.findall(
        r"resumed from ray at epoch (\d+), step \d+: continuing with epoch (\d+)", log
    )
    assert [(int(a), int(b)) for a, b in resumed] == [(epoch, epoch + 1) for epoch in epochs]


def assert_everything_in_the_bucket(
    cluster: S3Cluster, run_name: str, mlflow_run_id: str, workdir: Path
) -> None:
    """The run record, the last checkpoint and the MLflow artifacts are objects in the bucket;
    no local run storage (the client's, the nodes', the cluster default) got anything."""
    keys = cluster.s3.keys(cluster.bucket, f"runs/{run_name}/")
    assert f"runs/{run_name}/resnetctl-run.json" in keys
    for name in ("state.pt", "meta.json"):
        assert f"runs/{run_name}/epoch_{EPOCHS:04d}/{name}" in keys, keys
    artifacts = cluster.s3.keys(cluster.bucket, "mlflow/")
    for name in ("checkpoints/best/state.pt", "plots/error_curves.png", "spec/resolved.yaml"):
        assert any(k.endswith(f"{mlflow_run_id}/artifacts/{name}") for k in artifacts), name
    assert any(k.endswith("/MLmodel") for k in artifacts), artifacts  # the logged model
    assert not any(cluster.local_storage.iterdir())  # the nodes' RESNETCTL_STORAGE
    assert not any(Path(os.environ["RESNETCTL_STORAGE"]).iterdir())  # the client's
    assert not (workdir / ".resnetctl").exists()
    assert not (Path.home() / "resnetctl" / "runs" / run_name).exists()  # the cluster default
