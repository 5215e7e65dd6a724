"""Jobs on a real two-node Ray cluster through the Ray Jobs API, tracked on a real MLflow
server; all on 127.0.0.1, every process stopped by process group afterwards."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch.conftest import Cluster, wait_for

pytestmark = pytest.mark.slow


def resnetctl(
    *args: str, cwd: Path, timeout: float = 420, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the CLI as a user would. The suite's token reaches it by RAY_AUTH_TOKEN_PATH alone:
    no RAY_AUTH_MODE, which Ray's own clients would need."""
    if env is None:
        env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return subprocess.run(
        [sys.executable, "-m", "resnetctl", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**env, "RAY_ADDRESS": ""},
    )


def machine_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine whose HOME is `home` and that has no Ray token set."""
    unset = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "HOME": str(home), **extra}


def test_two_worker_job_spans_both_nodes_and_tracks_to_server(
    cluster: Cluster, workdir: Path
) -> None:
    from mlflow import MlflowClient

    storage = cluster.logs / "storage"
    done = resnetctl(
        "submit",
        "job.yaml",
        "--json",
        "--address",
        cluster.dashboard,
        "--storage",
        str(storage),
        "--set",
        f"tracking.uri={cluster.mlflow}",
        "--set",
        "train.epochs=2",
        "--set",
        "description=the tiny net on two nodes",
        "--set",
        "tracking.system_metrics_interval_s=2",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    job = json.loads(done.stdout)
    assert job["state"] == "SUCCEEDED"
    assert f"resnetctl status {job['job_id']}" in done.stderr  # the next commands
    # The job's logs, followed on stderr, are the clean stream: Ray's lines are in the run's log.
    assert "Reporting training result" not in done.stderr and "\x1b[" not in done.stderr
    assert re.findall(r"^epoch (\d)/2  train error", done.stderr, re.M) == ["1", "2"]
    ray_lines = (storage / job["job_id"] / "resnetctl.log").read_text()
    assert "Reporting training result 2" in ray_lines
    client = MlflowClient(cluster.mlflow)
    experiment = client.get_experiment_by_name("e2e")
    (run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`resnetctl.run_name` = '{job['job_id']}'",
    )
    assert run.info.status == "FINISHED"
    nodes = run.data.tags["ray.worker_nodes"].split(",")
    assert len(nodes) == 2 and nodes[0] != nodes[1]  # one worker on each node
    history = client.get_metric_history(run.info.run_id, "val_top1_error_pct")
    assert sorted(m.step for m in history) == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"spec", "plots", "checkpoints", "logs"} <= artifacts
    _assert_reviewable(client, run, workdir, nodes)
    listed = resnetctl("list", "--json", "--address", cluster.dashboard, cwd=workdir)
    rows = {row["job_id"]: row for row in json.loads(listed.stdout)}
    assert rows[job["job_id"]]["state"] == "SUCCEEDED"
    assert rows[job["job_id"]]["mlflow_run"] == run.info.run_id


def _assert_reviewable(client, run, workdir: Path, nodes: list[str]) -> None:
    """What a reviewer reads off the MLflow server (its REST API, through MlflowClient) about
    the run of a job submitted to the cluster: identity, provenance, summary, system metrics of
    both nodes, datasets, the logged and registered model."""
    import getpass

    tags, metrics = run.data.tags, run.data.metrics
    assert run.info.run_name == tags["resnetctl.run_name"]  # the name `list` prints
    assert tags["mlflow.note.content"] == "the tiny net on two nodes"  # Description
    # Source and Created by: the submitter's spec file and user, not the head node's.
    assert tags["mlflow.source.name"] == str(workdir / "job.yaml")
    assert tags["mlflow.user"] == getpass.getuser()
    shown = {k: tags[k] for k in ("model", "depth", "shortcut", "data", "workers", "device")}
    assert shown == {
        "model": "cifar_resnet8",
        "depth": "8",
        "shortcut": "A",
        "data": "synthetic",
        "workers": "2",
        "device": "cpu",
    }
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # Summary metrics, at the last epoch.
    errors = {
        m.step: m.value for m in client.get_metric_history(run.info.run_id, "val_top1_error_pct")
    }
    best = int(metrics["best_epoch"])
    assert metrics["best_val_top1_error_pct"] == errors[best] == min(errors.values())
    assert metrics["final_val_top1_acc_pct"] == pytest.approx(100 - errors[2])
    assert 0 < metrics["startup_seconds"] < metrics["total_seconds"]
    assert metrics["model_parameters"] > 0 and metrics["model_multiply_adds"] > 0
    assert {"data_wait_seconds", "compute_seconds"} <= set(metrics)
    # System metrics of each node the workers ran on, under the node's label.
    per_node = {key.split("/")[1] for key in metrics if key.startswith("system/node-")}
    assert per_node == {f"node-{node[:8]}" for node in nodes}, sorted(metrics)
    for node in per_node:
        assert f"system/{node}/cpu_utilization_percentage" in metrics
    # The datasets trained and validated on.
    inputs = {i.dataset.name: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["synthetic/train", "synthetic/val"]
    assert json.loads(inputs["synthetic/train"].profile) == {"num_images": 64, "num_classes": 4}
    # The logged model is the best epoch's; its version is registered and, the first in this
    # store, holds the alias.
    (output,) = client.get_run(run.info.run_id).outputs.model_outputs
    assert output.step == best
    (version,) = client.search_model_versions(f"run_id = '{run.info.run_id}'")
    assert version.name == "tiny" and version.tags["resnetctl.epoch"] == str(best)
    assert client.get_model_version_by_alias("tiny", "best").version == version.version


def test_stop_ends_a_running_job(cluster: Cluster, workdir: Path) -> None:
    done = resnetctl(
        "submit",
        "job.yaml",
        "--no-wait",
        "--json",
        "--address",
        cluster.dashboard,
        "--storage",
        str(cluster.logs / "storage"),
        "--set",
        f"tracking.uri={cluster.mlflow}",
        "--set",
        "train.epochs=500",
        cwd=workdir,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    job_id = json.loads(done.stdout)["job_id"]

    def running() -> bool:
        status = resnetctl("status", job_id, "--json", "--address", cluster.dashboard, cwd=workdir)
        return json.loads(status.stdout)["state"] == "RUNNING"

    assert wait_for(running, 120, interval=2)
    stopped = resnetctl("stop", job_id, "--json", "--address", cluster.dashboard, cwd=workdir)
    assert stopped.returncode == 0 and json.loads(stopped.stdout)["state"] == "STOPPED"
    status = resnetctl("status", job_id, "--address", cluster.dashboard, cwd=workdir)
    assert status.stdout.startswith(f"{job_id}: STOPPED")
    listed = resnetctl("list", "--address", cluster.dashboard, cwd=workdir)
    assert job_id in listed.stdout and "STOPPED" in listed.stdout


def test_job_too_big_for_the_cluster_fails_within_the_timeout(
    cluster: Cluster, workdir: Path
) -> None:
    done = resnetctl(
        "submit",
        "job.yaml",
        "--json",
        "--address",
        cluster.dashboard,
        "--set",
        f"tracking.uri={cluster.mlflow}",
        "--set",
        "resources.workers=3",
        "--set",
        "train.batch_size_per_worker=4",
        "--set",
        "resources.placement_timeout_s=10",
        cwd=workdir,
        timeout=300,
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["state"] == "FAILED"
    assert "cannot place 3 workers" in done.stderr


def test_unknown_job_and_unreachable_cluster_are_clear_errors(
    cluster: Cluster, workdir: Path
) -> None:
    missing = resnetctl("status", "no-such-job", "--address", cluster.dashboard, cwd=workdir)
    assert missing.returncode == 2 and "no job 'no-such-job'" in missing.stderr
    port = 9  # discard: nothing listens there
    gone = resnetctl("list", "--address", f"http://127.0.0.1:{port}", cwd=workdir, timeout=120)
    assert gone.returncode == 2
    assert f"cannot reach the Ray Jobs API at http://127.0.0.1:{port}" in gone.stderr


def test_local_tracking_store_is_refused_for_a_cluster(cluster: Cluster, workdir: Path) -> None:
    done = resnetctl("submit", "job.yaml", "--address", cluster.dashboard, cwd=workdir)
    assert done.returncode == 2
    assert "is a local store that the cluster's workers cannot reach" in done.stderr


def test_a_machine_without_the_token_is_told_how_to_get_it(
    cluster: Cluster, workdir: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    dashboard = ("--address", cluster.dashboard)
    commands = [
        ("list", *dashboard),
        ("status", "some-job", *dashboard),
        ("logs", "some-job", *dashboard),
        ("submit", "job.yaml", *dashboard, "--set", f"tracking.uri={cluster.mlflow}"),
        ("submit", "job.yaml", "--address", cluster.gcs),  # join as a driver
    ]
    for env, says in (
        (machine_env(home), "needs its auth token and this machine has none"),
        (machine_env(home, RAY_AUTH_TOKEN="not-the-token"), "refused this machine's auth token"),
    ):
        for args in commands:
            done = resnetctl(*args, cwd=workdir, env=env, timeout=60)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2, (args, done.stderr[-2000:])
            assert len(lines) == 1 and says in lines[0], (args, done.stderr[-2000:])
            assert "ray get-auth-token" in lines[0] and "export RAY_AUTH_TOKEN=" in lines[0]
    assert not (home / ".ray").exists()


def test_the_token_in_the_home_folder_alone_is_enough(
    cluster: Cluster, workdir: Path, tmp_path: Path, ray_token: str
) -> None:
    # What `ray get-auth-token --generate` leaves on a client: the file, and no RAY_AUTH_MODE.
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(ray_token)
    listed = resnetctl(
        "list", "--json", "--address", cluster.dashboard, cwd=workdir, env=machine_env(home)
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert isinstance(json.loads(listed.stdout), list)


def test_nothing_listening_at_a_gcs_address_is_one_line(workdir: Path) -> None:
    done = resnetctl("submit", "job.yaml", "--address", "127.0.0.1:9", cwd=workdir, timeout=60)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "nothing answers at the Ray cluster address 127.0.0.1:9" in line
