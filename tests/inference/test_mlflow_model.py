"""MODEL as an MLflow model URI: the logged module, the run's spec, the data's class names."""

from __future__ import annotations

from pathlib import Path

import torch

from resnetctl.inference.source import load_model
from resnetctl.spec.loader import dump_spec
from resnetctl.tracking.run import JobRun
from tests.analysis.conftest import copy_store
from tests.inference.conftest import colour_spec


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
