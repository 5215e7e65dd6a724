"""MODEL as an MLflow model URI: the logged module, the run's spec, the data's class names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from resnetctl.inference.source import load_model
from resnetctl.spec.loader import dump_spec
from resnetctl.tracking.run import JobRun
from tests.analysis.conftest import copy_store
from tests.inference.conftest import COLOURS, colour_image, colour_spec


def _started_run(root: Path, mlflow_template: Path, tmp_path: Path) -> tuple[str, JobRun]:
    """A copy of the prepared store with a new run of the colour job in it: (URI, run)."""
    uri = copy_store(mlflow_template, tmp_path / "store")
    spec = colour_spec(root)
    run = JobRun.start(
        spec, uri, resolved_yaml=dump_spec(spec), artifact_root=(tmp_path / "art").as_uri()
    )
    return uri, run


def test_a_logged_model_loads_with_its_runs_spec(
    colour_run: tuple[Path, Path], mlflow_template: Path, tmp_path: Path
) -> None:
    root, checkpoint = colour_run
    uri, run = _started_run(root, mlflow_template, tmp_path)
    reference = load_model(str(checkpoint))
    model_uri = run.log_model(reference.model, 16)

    loaded = load_model(model_uri, tracking_uri=uri)
    assert loaded.run_id == run.run_id
    assert loaded.spec is not None and loaded.spec.model.name == "cifar_resnet8"
    assert loaded.classes == ("blue", "red")  # from the run's data source
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), reference.model(x), atol=1e-5)


def test_eval_of_a_run_logs_eval_metrics_to_its_mlflow_run(
    colour_run: tuple[Path, Path], mlflow_template: Path, tmp_path: Path
) -> None:
    import shutil

    from mlflow import MlflowClient

    from resnetctl.inference.evaluate import evaluate, log_results
    from resnetctl.storage import RunRecord

    root, checkpoint = colour_run
    uri, run = _started_run(root, mlflow_template, tmp_path)
    storage = tmp_path / "runs"
    shutil.copytree(checkpoint, storage / "colours-1" / "epoch_0003")
    RunRecord("colours-1", "colours", uri, run.run_id).save(storage)

    loaded = load_model("colours-1", storage=storage)
    results, _ = evaluate(loaded, ["center", "ten_crop"], batch_size=4)
    assert log_results(loaded, results)
    logged = MlflowClient(uri).get_run(run.run_id).data.metrics
    assert logged["eval_top1_error_ten_crop_pct"] == results[1].top1_error
    assert logged["eval_loss_center"] == results[0].loss
    assert "eval_top1_error_multi_scale_pct" not in logged


@pytest.fixture
def pickled_model(
    colour_run: tuple[Path, Path], mlflow_template: Path, tmp_path: Path
) -> tuple[str, str]:
    """(tracking URI, `runs:/` URI) of the colour network logged by another tool in MLflow's
    pickle format, into a run that has the colour job's spec."""
    import mlflow
    import mlflow.pytorch

    root, checkpoint = colour_run
    uri, run = _started_run(root, mlflow_template, tmp_path)
    network = load_model(str(checkpoint)).model
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(run_id=run.run_id):
            mlflow.pytorch.log_model(
                network, name="pickled", serialization_format="pickle", pip_requirements=[]
            )
    finally:
        mlflow.set_tracking_uri(previous)
    return uri, f"runs:/{run.run_id}/pickled"


def _cli(*args: str) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from resnetctl.cli.app import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["eval", "export", "predict"])
def test_a_pickle_format_model_is_refused_without_allow_pickle(
    command: str, pickled_model: tuple[str, str], tmp_path: Path
) -> None:
    # Unpickling a module runs whatever code its file names: a model logged by another tool
    # loads only when the user says the source is trusted.
    uri, model_uri = pickled_model
    image = colour_image(tmp_path / "b.png", COLOURS["blue"], seed=7)
    extra = {"predict": [str(image)], "export": ["-o", str(tmp_path / "m.pt")]}
    args = [command, model_uri, *extra.get(command, []), "--tracking-uri", uri]
    code, _, stderr = _cli(*args)
    assert code == 2, stderr
    assert "pickle" in stderr and "--allow-pickle" in stderr, stderr
    assert not (tmp_path / "m.pt").exists()


def test_allow_pickle_loads_a_trusted_pickle_format_model(
    pickled_model: tuple[str, str], tmp_path: Path
) -> None:
    uri, model_uri = pickled_model
    blue = colour_image(tmp_path / "b.png", COLOURS["blue"], seed=7)
    code, stdout, stderr = _cli(
        "predict", model_uri, str(blue), "--json", "--tracking-uri", uri, "--allow-pickle"
    )
    assert code == 0, stderr
    (prediction,) = json.loads(stdout)["predictions"]
    assert prediction["top"][0]["label"] == "blue"
    # resnetctl's own models (pt2) need no flag: the archive is checked to hold no pickle.
    run_id = model_uri.split("/")[1]
    run = JobRun(uri, run_id)
    pt2 = run.log_model(load_model(model_uri, tracking_uri=uri, allow_pickle=True).model, 16)
    code, stdout, stderr = _cli("predict", pt2, str(blue), "--json", "--tracking-uri", uri)
    assert code == 0, stderr
