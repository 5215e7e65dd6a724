"""Zero lost work on the loopback two-node cluster with runs and data in a bucket: the
quickstart with a checkpoint every few steps goes through two faults in one run, and trains
exactly what an undisturbed run trains.

1. No notice: rank 0's worker is SIGKILLed while its checkpoint uploads to the bucket (uploads
   slowed on purpose, `RESNETCTL_FAULT_UPLOAD_DELAY_S`). The half-uploaded checkpoint has no
   manifest: the restart, `resnetctl list` and `eval`'s choice of checkpoint skip it with a
   warning naming it. The group restarts from the last complete checkpoint Ray Train's
   controller has registered, in the middle of an epoch.
2. A notice: the worker node is drained with `ray drain-node --deadline-remaining-seconds 30`
   in the middle of an epoch, a replacement node joins, and the drained node is killed (process
   group) at the deadline. The workers checkpoint at the notice, again just before the
   deadline, and stop stepping: the restart redoes at most a handful of steps.

Every epoch is logged once, each step's loss once, and every step's loss equals the one an
undisturbed run computes (two gloo ranks in this process's children, on the same data)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import JOBS
from tests.launch.conftest import RayNodes, resnetctl
from tests.processes import wait_for
from tests.storage.conftest import S3Cluster, export_data
from tests.storage.test_s3_cluster import wait_for_replacement

pytestmark = pytest.mark.slow

EPOCHS = 3
STEPS_PER_EPOCH = 22  # the digits' 1,437 training scans, 2 workers of 32
EVERY = 8
EXPERIMENT = "s3-preemption"
DELAY_S = 3  # between a checkpoint's data files and its manifest
UPLOADER = re.compile(r"\(RayTrainWorker pid=(\d+)[^)]*\).*waiting before the manifest")


def _job(cluster: S3Cluster, workdir: Path) -> dict[str, Any]:
    job = yaml.safe_load((JOBS / "quickstart.yaml").read_text())
    job["data"]["source"] = {
        "kind": "imagefolder",
        "root": export_data(job["data"], cluster.bucket, "digits"),
    }
    job["train"]["epochs"] = EPOCHS
    job["train"]["log_every_n_steps"] = 1
    job["checkpoint"]["every_n_steps"] = EVERY
    job["failure"]["max_failures"] = 2
    job["tracking"] = {"experiment": EXPERIMENT, "uri": cluster.mlflow}
    (workdir / "job.yaml").write_text(yaml.safe_dump(job))
    return job


def _reference_losses(rank: int, world: int, spec_json: dict) -> dict[int, float]:
    """An undisturbed run of the job in one gloo group: rank 0's per-step losses."""
    from resnetctl.spec import JobSpec
    from resnetctl.train.loop import run_training
    from resnetctl.train.runner import Placement
    from tests.train._helpers import FakeSession

    spec = JobSpec.model_validate(spec_json)
    with tempfile.TemporaryDirectory() as tmp:
        session = FakeSession(Path(tmp))
        run_training(spec, Placement.from_process_group(), session)
    return {
        int(m["global_step"]): m["step_train_loss"]
        for m, _, _ in session.reports
        if "global_step" in m
    }


def _undisturbed(workdir: Path, out: Path) -> dict[int, float]:
    from resnetctl.spec import load_spec
    from tests.train._dist import run_distributed

    spec = load_spec(str(workdir / "job.yaml"), [])
    return run_distributed(_reference_losses, 2, out, spec.model_dump(mode="json"))[0]


def _partial_checkpoints(cluster: S3Cluster, prefix: str) -> list[str]:
    """Checkpoint folders under `prefix` in the bucket with their state but no manifest."""
    folders: dict[str, set[str]] = {}
    for key in cluster.s3.keys(cluster.bucket, prefix):
        folder, _, name = key.rpartition("/")
        folders.setdefault(folder, set()).add(name)
    return sorted(
        f for f, names in folders.items() if "state.pt" in names and "manifest.json" not in names
    )


def _complete_checkpoints(cluster: S3Cluster, prefix: str) -> list[str]:
    """Checkpoint folders under `prefix` in the bucket whose manifest is written."""
    return sorted(
        key.rpartition("/")[0]
        for key in cluster.s3.keys(cluster.bucket, prefix)
        if key.endswith("/manifest.json")
    )


def _registered_checkpoints(cluster: S3Cluster, prefix: str) -> list[str]:
    """Checkpoint folders under `prefix` Ray Train's controller has registered, from the
    snapshot it writes to the run's folder: only these survive a restart. A manifest is
    written before the controller's next poll of the workers takes the report."""
    try:
        text = cluster.s3.read(cluster.bucket, f"{prefix}checkpoint_manager_snapshot.json")
    except cluster.s3.client.exceptions.NoSuchKey:  # type: ignore[attr-defined]
        return []
    snapshot = json.loads(text)
    return sorted(f"{prefix}{r['checkpoint_dir_name']}" for r in snapshot["checkpoint_results"])


def _uploader_pid(log: Path) -> int:
    """The pid of the worker waiting before a manifest (rank 0: only it writes checkpoints)."""
    waits = re.findall(
        r"\(RayTrainWorker pid=(\d+)[^)]*\).*waiting before the manifest", log.read_text()
    )
    assert waits, log.read_text()[-3000:]
    return int(waits[-1])


def _history(client: Any, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def test_faults_with_and_without_notice_cost_a_handful_of_steps_and_change_nothing(
    s3_cluster: S3Cluster,
    submit,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient

    nodes: RayNodes = s3_cluster.nodes
    _job(s3_cluster, workdir)
    undisturbed = _undisturbed(workdir, tmp_path / "reference")
    assert sorted(undisturbed) == list(range(1, EPOCHS * STEPS_PER_EPOCH + 1))

    client = MlflowClient(s3_cluster.mlflow)
    (head,) = [n["node_id"] for n in nodes.alive_nodes() if n["is_head_node"]]
    (second,) = [n["node_id"] for n in nodes.alive_nodes() if not n["is_head_node"]]
    storage = f"s3://{s3_cluster.bucket}/runs"
    monkeypatch.setenv("RESNETCTL_FAULT_UPLOAD_DELAY_S", str(DELAY_S))
    started = time.monotonic()
    timings: dict[str, float] = {}
    job = submit("job.yaml", "--json", "--address", nodes.dashboard, "--storage", storage)

    def run() -> Any:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return runs[0] if runs else None

    def steps_logged() -> int:
        assert job.process.poll() is None, job.stderr.read_text()[-3000:]
        found = run()
        return len(_history(client, found.info.run_id, "step_train_loss")) if found else 0

    # 1. In epoch 1, after the first complete step checkpoint: rank 0 killed mid-upload.
    assert wait_for(lambda: steps_logged() > 2, timeout=420)
    run_name = run().data.tags["resnetctl.run_name"]
    log = Path(tempfile.gettempdir()) / "resnetctl-logs" / run_name / "resnetctl.log"
    prefix = f"runs/{run_name}/"
    # Killed before the controller has taken the complete checkpoint's report, the worker
    # would restart from the one before (here: from scratch), so the kill waits for both.
    assert wait_for(lambda: _registered_checkpoints(s3_cluster, prefix), timeout=300, interval=0.2)
    assert wait_for(lambda: _partial_checkpoints(s3_cluster, prefix), timeout=120, interval=0.2)
    (partial,) = _partial_checkpoints(s3_cluster, prefix)
    partial_step = int(partial.rsplit("_", 1)[1])
    os.kill(_uploader_pid(log), signal.SIGKILL)
    timings["worker killed"] = time.monotonic() - started
    registered = _registered_checkpoints(s3_cluster, prefix)
    assert registered and set(registered) <= set(_complete_checkpoints(s3_cluster, prefix))
    assert "_step_" in registered[-1], registered  # in epoch 1: a step checkpoint
    restored = int(registered[-1].rsplit("_", 1)[1])
    assert restored < partial_step
    assert wait_for(lambda: "restarted from the checkpoint" in job.stderr.read_text(), 300), (
        job.stderr.read_text()[-3000:]
    )
    # From the last checkpoint the controller registered, not the half-uploaded one.
    assert f"restarted from the checkpoint at step {restored}" in job.stderr.read_text()
    # While the run goes on: the half-uploaded checkpoint is skipped, with a warning naming it.
    listed = resnetctl("list", "--storage", storage, "--json", cwd=workdir)
    (row,) = [r for r in json.loads(listed.stdout) if r["run"] == run_name]
    assert f"s3://{s3_cluster.bucket}/{partial}" in listed.stderr and "incomplete" in listed.stderr
    assert row["last_checkpoint_step"] < partial_step
    # What `eval RUN` (export, predict) loads from the run in the bucket: its best, else its
    # latest complete checkpoint.
    from resnetctl.inference.source import load_model
    from resnetctl.storage import StoragePath

    with caplog.at_level(logging.WARNING):
        # In epoch 1 no checkpoint is validated yet: no best, and the latest complete one.
        loaded = load_model(run_name, storage=StoragePath.of(storage))
    chosen = str(loaded.checkpoint)
    assert partial not in chosen and "_step_" in chosen and chosen.startswith(storage)
    assert partial in caplog.text

    # 2. In epoch 2: the worker node drained with a 30 s deadline, replaced, killed at it.
    monkeypatch.delenv("RESNETCTL_FAULT_UPLOAD_DELAY_S")
    assert wait_for(lambda: steps_logged() > STEPS_PER_EPOCH + 6, timeout=420)
    drained = time.monotonic()
    subprocess.run(
        [
            str(Path(sys.executable).parent / "ray"),
            "drain-node",
            f"--address={nodes.gcs}",
            f"--node-id={second}",
            "--reason=DRAIN_NODE_REASON_PREEMPTION",
            "--reason-message=test: spot reclaim",
            "--deadline-remaining-seconds=30",
        ],
        check=True,
        timeout=60,
        env={**os.environ, "RAY_AUTH_MODE": "token"},
    )
    nodes.add_worker("replacement")
    time.sleep(max(0.0, 30 - (time.monotonic() - drained)))
    nodes.kill_worker("worker")
    timings["node killed at its deadline"] = time.monotonic() - started
    wait_for_replacement(nodes, head, second)

    code, out, err = job.wait(timeout=900)
    timings["job finished"] = time.monotonic() - started
    print(f"timings (s): {json.dumps({k: round(v) for k, v in timings.items()})}")
    assert code == 0, err[-4000:]
    finished = client.get_run(run().info.run_id)
    assert finished.info.status == "FINISHED"
    # Each epoch once, each step once, and the undisturbed run's loss at every step.
    epochs = _history(client, finished.info.run_id, "val_top1_error_pct")
    assert [step for step, _ in epochs] == list(range(1, EPOCHS + 1))
    losses = dict(_history(client, finished.info.run_id, "step_train_loss"))
    assert sorted(losses) == sorted(undisturbed)
    assert losses == undisturbed
    # Two restarts; the notice was heard, and the drain cost at most 5 steps.
    assert finished.data.metrics["restarts"] == 2
    assert finished.data.metrics["preemptions"] == 1
    redone = [value for _, value in _history(client, finished.info.run_id, "steps_redone")]
    drain_cost = redone[-1] - redone[-2]
    assert drain_cost <= 5, (redone, err[-3000:])
    assert re.search(r"^checkpoint at step \d+: .*notice: node ", err, re.M), err[-3000:]
    assert re.search(r"^checkpoint at step \d+: .*deadline is near", err, re.M), err[-3000:]
    print(
        f"steps redone: {redone}; restart seconds: "
        f"{_history(client, finished.info.run_id, 'restart_seconds')}"
    )
    # The half-uploaded checkpoint is gone once the run has ended.
    assert not _partial_checkpoints(s3_cluster, prefix)
