"""`resnetctl submit --storage s3://...` on the embedded Ray: every checkpoint and the run record
are objects in a bucket (a real S3 server on loopback), nothing lands in local run storage,
and `--resume RUN --storage s3://...`, `list` and `analyze` find the run there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.launch.conftest import metric_history, mlflow_runs, summary

pytestmark = pytest.mark.slow


def test_a_run_in_a_bucket_is_stored_listed_resumed_and_analyzed_there(
    s3_server, bucket: str, submit, workdir: Path
) -> None:
    storage = f"s3://{bucket}/runs"
    local_default = Path(os.environ["RESNETCTL_STORAGE"])
    code, out, err = submit(
        "job.yaml", "--json", "--storage", storage, "--set", "train.epochs=2"
    ).wait()
    assert code == 0, err[-3000:]
    result = summary(out)
    run_name = result["run_name"]
    assert result["storage_path"] == f"{storage}/{run_name}"
    keys = s3_server.keys(bucket, f"runs/{run_name}/")
    assert f"runs/{run_name}/resnetctl-run.json" in keys
    for epoch in (1, 2):
        assert f"runs/{run_name}/epoch_{epoch:04d}/state.pt" in keys, keys
        assert f"runs/{run_name}/epoch_{epoch:04d}/meta.json" in keys, keys
    # Nothing went to local run storage, neither the default nor $RESNETCTL_STORAGE.
    assert not (workdir / ".resnetctl").exists()
    assert not any(local_default.iterdir())

    code, out, err = submit(
        "job.yaml", "--json", "--storage", storage, "--resume", run_name, "--set", "train.epochs=3"
    ).wait()
    assert code == 0, err[-3000:]
    assert summary(out)["mlflow_run_id"] == result["mlflow_run_id"]
    assert "continuing with epoch 3" in err
    (run,) = mlflow_runs(workdir)
    assert [s for s, _ in metric_history(workdir, run.info.run_id, "train_loss")] == [1, 2, 3]
    assert f"runs/{run_name}/epoch_0003/state.pt" in s3_server.keys(bucket, f"runs/{run_name}/")

    listed = subprocess.run(
        [sys.executable, "-m", "resnetctl", "list", "--storage", storage, "--json"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr[-2000:]
    (row,) = json.loads(listed.stdout)
    assert row["run"] == run_name and row["last_checkpoint_epoch"] == 3
    assert row["mlflow_run"] == result["mlflow_run_id"]

    # analyze finds the run's folder in the bucket, its MLflow run from the record there, and
    # ranks its checkpoints there (the best of three epochs by validation error).
    from resnetctl.analysis.targets import load_trained

    trained = load_trained(
        f"{storage}/{run_name}", tracking_uri=f"sqlite:///{workdir / 'mlflow.db'}"
    )
    assert trained.run_id == result["mlflow_run_id"]
    assert str(trained.checkpoint).startswith(f"{storage}/{run_name}/epoch_")
    assert trained.model.fc.out_features == 4
