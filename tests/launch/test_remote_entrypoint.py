"""Where a job submitted to a cluster keeps its runs: `--storage`, else the nodes' own
`RESNETCTL_STORAGE` (the bucket a cluster config names), else the cluster default. The entrypoint
runs in a real `sh -c`, as Ray Jobs runs it, with a stand-in `python` that prints what it got."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from resnetctl.launch.remote import entrypoint


@pytest.fixture
def shell(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "python"
    shim.write_text('#!/bin/sh\necho "$RESNETCTL_STORAGE|$*"\n')
    shim.chmod(0o755)

    def run(storage: str | None, node_env: dict[str, str]) -> tuple[str, str]:
        command, env_vars = entrypoint(storage)
        env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin", "HOME": "/home/ray", **node_env}
        env.update(env_vars)  # Ray puts the runtime_env's variables over the node's
        done = subprocess.run(["sh", "-c", command], env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        where, args = done.stdout.strip().split("|")
        return where, args

    return run


def test_the_nodes_bucket_is_used_when_the_client_names_none(shell) -> None:
    where, args = shell(None, {"RESNETCTL_STORAGE": "s3://team-bucket/runs"})
    assert where == "s3://team-bucket/runs"
    assert args == "-m resnetctl submit job.yaml --json"


def test_without_either_the_cluster_default_in_the_nodes_home(shell) -> None:
    assert shell(None, {})[0] == "/home/ray/resnetctl/runs"


def test_storage_given_to_submit_wins_over_the_nodes(shell) -> None:
    where, _ = shell("s3://mine/runs", {"RESNETCTL_STORAGE": "s3://team-bucket/runs"})
    assert where == "s3://mine/runs"


class _Jobs:
    """A Jobs client that keeps what it was asked to submit."""

    def __init__(self) -> None:
        self.submitted: list[dict] = []

    def submit_job(self, **job: object) -> str:
        self.submitted.append(job)
        return str(job["submission_id"])


@pytest.mark.parametrize(("set_here", "expected"), [(None, "180"), ("600", "600")])
def test_a_stopped_job_has_time_to_checkpoint_before_ray_kills_it(
    monkeypatch: pytest.MonkeyPatch, set_here: str | None, expected: str
) -> None:
    from resnetctl.launch import remote
    from resnetctl.spec.loader import load_spec_text
    from tests.launch.conftest import TINY_JOB

    jobs = _Jobs()
    monkeypatch.setattr(remote, "client", lambda address: jobs)
    if set_here is None:
        monkeypatch.delenv("RAY_JOB_STOP_WAIT_TIME_S", raising=False)
    else:
        monkeypatch.setenv("RAY_JOB_STOP_WAIT_TIME_S", set_here)
    text = TINY_JOB.replace(
        "tracking: {experiment: e2e}", "tracking: {uri: 'http://127.0.0.1:5000'}"
    )
    spec = load_spec_text(text, "job.yaml")
    remote.submit(spec, "http://127.0.0.1:8265")
    (job,) = jobs.submitted
    # Ray's job supervisor reads it from the job's environment: 3 s would cut the checkpoint
    # that resnetctl stop's SIGTERM asks for.
    assert job["runtime_env"]["env_vars"]["RAY_JOB_STOP_WAIT_TIME_S"] == expected
