"""Jobs on a real two-node Ray cluster through the Ray Jobs API, tracked on a real MLflow
server; all on 127.0.0.1, every process stopped by process group afterwards: stopping a job,
a job too big for the cluster, clear errors without a token or a cluster. A two-worker job that
spans both nodes and what a reviewer reads of it on the MLflow server are tested with its runs
and data in a bucket (tests/storage/test_s3_cluster.py), which costs one job start, not two."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.launch.conftest import Cluster, resnetctl, wait_for

pytestmark = pytest.mark.slow


def machine_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a machine whose HOME is `home` and that has no Ray token set."""
    unset = ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE")
    return {**{k: v for k, v in os.environ.items() if k not in unset}, "HOME": str(home), **extra}


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
