"""`resnetctl submit --storage s3://...` on the embedded Ray, with its data in the bucket and an
MLflow server whose artifacts go to the bucket: the run record, every checkpoint and every
MLflow artifact are objects there, nothing lands in local run storage, and
`--resume RUN --storage s3://...`, `list` and `analyze` find the run in the bucket."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.launch.conftest import TINY_JOB, Processes, mlflow_up, start_mlflow, summary
from tests.storage.conftest import export_data

pytestmark = pytest.mark.slow


def export_synthetic(bucket: str) -> str:
    """The tiny job's synthetic images, in the bucket."""
    import yaml

    return export_data(yaml.safe_load(TINY_JOB)["data"], bucket)


def test_a_run_in_a_bucket_is_stored_listed_resumed_and_analyzed_there(
    s3_server, bucket: str, submit, workdir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from mlflow import MlflowClient

    logs = tmp_path_factory.mktemp("mlflow-s3")
    server = Processes(logs)
    tracking = start_mlflow(server, logs, f"s3://{bucket}/mlflow")
    try:
        data = export_synthetic(bucket)
        job = TINY_JOB.replace(
            """  source: {kind: synthetic, num_classes: 4, train_per_class: 16, val_per_class: 4,
           image_size: [16, 16], seed: 3}""",
            f"  source: {{kind: imagefolder, root: '{data}'}}",
        ).replace(
            "tracking: {experiment: e2e}", f"tracking: {{experiment: e2e, uri: '{tracking}'}}"
        )
        assert data in job and tracking in job
        (workdir / "job.yaml").write_text(job)
        mlflow_up(tracking, logs)

        storage = f"s3://{bucket}/runs"
        local_default = Path(os.environ["RESNETCTL_STORAGE"])
        code, out, err = submit(
            "job.yaml", "--json", "--storage", storage, "--set", "train.epochs=2"
        ).wait()
        assert code == 0, err[-3000:]
        result = summary(out)
        run_name = result["run_name"]
        assert result["storage_path"] == f"{storage}/{run_name}"
        # The log was written locally and moved into the bucket as the job ended.
        assert result["log_file"] == f"{storage}/{run_name}/resnetctl.log"
        assert not (Path(tempfile.gettempdir()) / "resnetctl-logs" / run_name).exists()
        keys = s3_server.keys(bucket, f"runs/{run_name}/")
        assert f"runs/{run_name}/resnetctl-run.json" in keys
        for epoch in (1, 2):
            assert f"runs/{run_name}/epoch_{epoch:04d}/state.pt" in keys, keys
            assert f"runs/{run_name}/epoch_{epoch:04d}/meta.json" in keys, keys
        # Nothing went to local run storage, neither the default nor $RESNETCTL_STORAGE.
        assert not (workdir / ".resnetctl").exists()
        assert not any(local_default.iterdir())
        # The MLflow artifacts went through the server into the bucket.
        client = MlflowClient(tracking)
        run = client.get_run(result["mlflow_run_id"])
        assert run.info.artifact_uri.startswith("mlflow-artifacts:")
        artifacts = s3_server.keys(bucket, "mlflow/")
        for name in ("checkpoints/best/state.pt", "plots/error_curves.png", "spec/resolved.yaml"):
            assert any(k.endswith(f"{run.info.run_id}/artifacts/{name}") for k in artifacts), name
        assert any(k.endswith("/MLmodel") for k in artifacts), artifacts  # the logged model

        code, out, err = submit(
            "job.yaml", "--json", "--storage", storage, "--resume", run_name,
            "--set", "train.epochs=3",
        ).wait()  # fmt: skip
        assert code == 0, err[-3000:]
        assert summary(out)["mlflow_run_id"] == result["mlflow_run_id"]
        # The terminal says where it resumed; the worker's own line is in the run's log, which
        # goes into the bucket beside the checkpoints when the job ends.
        assert f"resuming from s3://{bucket}/runs/{run_name}/epoch_0002" in err
        assert "epoch 3/3 " in err
        log = s3_server.read(bucket, f"runs/{run_name}/resnetctl.log")
        assert log.count("a job of this run started") == 2 and "continuing with epoch 3" in log
        history = client.get_metric_history(run.info.run_id, "train_loss")
        assert sorted(m.step for m in history) == [1, 2, 3]  # each epoch logged once
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

        # analyze (`resnetctl analyze RUN --storage s3://...`) finds the run by name in the
        # bucket, its MLflow run from the record there, and ranks its checkpoints there.
        from resnetctl.analysis.targets import load_trained

        for target in (run_name, f"{storage}/{run_name}"):
            trained = load_trained(target, tracking_uri=tracking, storage=storage)
            assert trained.run_id == result["mlflow_run_id"]
            assert str(trained.checkpoint).startswith(f"{storage}/{run_name}/epoch_")
            assert trained.model.fc.out_features == 4
    finally:
        server.stop()
