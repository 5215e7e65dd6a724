"""The driver's MLflow run handle: preparing the store, environment tags, logging the trained
model in a format that loads without unpickling code, and what logging it leaves behind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from resnetctl.models import create_model
from resnetctl.tracking.run import JobRun


def _new_run(tmp_path: Path) -> tuple[str, str]:
    """A new sqlite store under `tmp_path` with one run in it: (tracking URI, run id)."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    return uri, client.create_run(experiment).info.run_id


def test_log_model_does_not_leak_its_store_into_the_next_job(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mlflow.set_tracking_uri exports $MLFLOW_TRACKING_URI; a second job in this process would
    # then log into the first job's store instead of its own default.
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, run_id = _new_run(tmp_path)
    model_uri = JobRun(uri, run_id).log_model(create_model("cifar_resnet8", num_classes=4), 16)
    assert model_uri.startswith("models:/")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    import mlflow

    assert mlflow.get_tracking_uri() != uri


def _tiny_trained_net() -> torch.nn.Module:
    # A few steps of SGD in train mode: weights and BatchNorm's running statistics move away
    # from their initial values, so equal logits mean the trained state went through.
    torch.manual_seed(0)
    model = create_model("cifar_resnet8", num_classes=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        images, labels = torch.randn(8, 3, 16, 16), torch.randint(0, 4, (8,))
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def test_logged_model_is_not_a_pickle_and_reloads_with_the_same_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.pytorch

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri, run_id = _new_run(tmp_path)
    model = _tiny_trained_net()
    model_uri = JobRun(uri, run_id).log_model(model, 16)

    mlflow.set_tracking_uri(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "dl")))
        # torch.export's archive (weights as raw tensors, the graph as JSON), not torch.save's
        # pickle of the module, which runs code when it is loaded.
        assert (local / "data" / "model.pt2").is_file()
        assert not list(local.rglob("*.pth"))
        loaded = mlflow.pytorch.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(None)
    # A batch size other than the logged example's: the batch dimension was exported dynamic.
    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), model(images))


def test_prepare_store_creates_a_new_sqlite_store_that_jobs_then_use(tmp_path: Path) -> None:
    import sqlite3

    from resnetctl.tracking.run import prepare_store

    db = tmp_path / "mlflow.db"
    prepare_store(f"sqlite:///{db}")
    with sqlite3.connect(db) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"experiments", "runs", "metrics", "params"} <= tables
    client = MlflowClient(f"sqlite:///{db}")
    assert client.get_run(client.create_run("0").info.run_id).info.status == "RUNNING"


def test_environment_tags_are_collected_once_and_handed_out_as_copies() -> None:
    from resnetctl.tracking.run import environment_tags

    first = environment_tags()
    first["torch.version"] = "edited by a caller"
    second = environment_tags()
    assert second["torch.version"] != "edited by a caller"
    assert second["host.cpus"] == str(len(os.sched_getaffinity(0)))


def test_a_run_is_named_and_described_as_resnetctl_knows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnetctl.spec import load_spec
    from tests.conftest import JOBS

    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    monkeypatch.chdir(JOBS.parent)  # the spec file is given relative to it
    spec = load_spec(JOBS / "quickstart.yaml")
    assert spec.description  # the quickstart says what it is
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = JobRun.start(
        spec,
        uri,
        resolved_yaml="name: quickstart\n",
        artifact_root=(tmp_path / "art").as_uri(),
        extra_tags={
            "resnetctl.run_name": "quickstart-20261202-190440",
            "resnetctl.spec_file": "jobs/quickstart.yaml",
        },
    )
    info = run.client.get_run(run.run_id)
    # Searching MLflow by run name finds the name `--resume`, `list` and `status` print.
    assert info.info.run_name == "quickstart-20261202-190440"
    tags = info.data.tags
    assert tags["mlflow.note.content"] == spec.description  # the run page's Description
    assert tags["mlflow.source.name"] == str(JOBS / "quickstart.yaml")  # Source, absolute
    head = subprocess.run(
        ["git", "-C", str(JOBS), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert tags["mlflow.source.git.commit"] == head and len(head) == 40  # the spec's commit
    assert tags["mlflow.user"] == "alice"  # Created by
    # The runs table's short columns.
    shown = {key: tags[key] for key in ("model", "depth", "shortcut", "data", "workers", "device")}
    assert shown == {
        "model": "cifar_resnet20",
        "depth": "20",
        "shortcut": "A",
        "data": "digits",
        "workers": "2",
        "device": "cpu",
    }
    # Parameters: no empty values, no GPU count on a CPU run, the rate as scaled.
    params = info.data.params
    assert "" not in params.values() and "model.num_classes" not in params
    assert "resources.gpus_per_worker" not in params and params["resources.use_gpu"] == "False"
    assert float(params["train.effective_lr"]) == spec.train.scaled_lr(2)
    assert params["train.global_batch"] == str(spec.train.global_batch(2))
    # The experiment says what it holds and opens in MLflow's model-training view.
    experiment = run.client.get_experiment(info.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "resnetctl" in experiment.tags["mlflow.note.content"]
    # Its runs table, as `resnetctl ui` opens it, has the short tags as columns.
    saved = json.loads(experiment.tags["mlflow.sharedViewState.resnetctl"])
    assert saved["name"].startswith("resnetctl") and saved["createdAt"] > 1.7e12  # ms
    view = json.loads(saved["state"])
    assert [f"tags.`{key}`" for key in shown] == [
        column for column in view["selectedColumns"] if column.startswith("tags.")
    ]
    found = run.client.search_runs(
        [info.info.experiment_id],
        filter_string="attributes.run_name = 'quickstart-20261202-190440'",
    )
    assert [r.info.run_id for r in found] == [run.run_id]
