"""MODEL as an MLflow model URI: the logged module, the run's spec, the data's class names."""

from __future__ import annotations

from pathlib import Path

import torch

from resnetctl.inference.source import load_model
from resnetctl.spec.loader import dump_spec
from resnetctl.tracking.run import JobRun
from tests.analysis.conftest import copy_store
from tests.inference.conftest import colour_spec


def test_a_logged_model_loads_with_its_runs_spec(
    colour_run: tuple[Path, Path], mlflow_template: Path, tmp_path: Path
) -> None:
    root, checkpoint = colour_run
    uri = copy_store(mlflow_template, tmp_path / "store")
    spec = colour_spec(root)
    run = JobRun.start(
        spec, uri, resolved_yaml=dump_spec(spec), artifact_root=(tmp_path / "art").as_uri()
    )
    reference = load_model(str(checkpoint))
    model_uri = run.log_model(reference.model, 16)

    loaded = load_model(model_uri, tracking_uri=uri)
    assert loaded.run_id == run.run_id
    assert loaded.spec is not None and loaded.spec.model.name == "cifar_resnet8"
    assert loaded.classes == ("blue", "red")  # from the run's data source
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(loaded.model(x), reference.model(x), atol=1e-5)
