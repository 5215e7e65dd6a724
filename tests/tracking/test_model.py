"""The model a finished run hands over: its best checkpoint's network, linked to that epoch,
with a signature, an input example and pinned requirements, registered with alias `best`."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient

from resnetctl.models import create_model
from resnetctl.spec import JobSpec
from resnetctl.storage import best_checkpoint
from resnetctl.tracking.model import log_best_model, min_image_side, requirements
from resnetctl.train.checkpoint import save_checkpoint
from tests.analysis.conftest import copy_store

SPEC = {
    "name": "tiny-colours",
    "model": {"name": "cifar_resnet8"},
    "data": {
        "source": {"kind": "synthetic", "num_classes": 3},
        "pipeline": {"kind": "cifar", "crop": 16, "pad": 2},
    },
    "train": {"epochs": 3, "batch_size_per_worker": 4, "base_lr": 0.1},
    "checkpoint": {"metric": "val_top1_error"},
}


def _run_folder(folder: Path, errors: dict[int, float], spec: JobSpec) -> dict[int, Path]:
    """Checkpoints of a fake run: one network with its own random weights per epoch."""
    paths = {}
    for epoch, error in errors.items():
        torch.manual_seed(epoch)
        network = create_model("cifar_resnet8", num_classes=3)
        with torch.no_grad():  # BatchNorm statistics that differ per epoch too
            for module in network.modules():
                if isinstance(module, torch.nn.BatchNorm2d):
                    module.running_mean.uniform_(-0.5, 0.5)
        meta = {
            "epoch": epoch,
            "metrics": {"val_top1_error": error},
            "model": "cifar_resnet8",
            "spec": spec.model_dump(mode="json"),
        }
        paths[epoch] = save_checkpoint(
            folder / f"checkpoint_epoch_{epoch:04d}", {"model": network.state_dict()}, meta
        )
    return paths


@pytest.mark.slow  # torch.export of a network: about 5 s
def test_the_registered_best_model_is_the_best_checkpoint_not_the_last(
    tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import mlflow.pytorch

    from resnetctl.inference.source import load_model

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    spec = JobSpec.model_validate(SPEC)
    uri = copy_store(mlflow_template, tmp_path / "store")
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("e", artifact_location=(tmp_path / "art").as_uri())
    run_id = client.create_run(experiment).info.run_id
    for epoch, error in ((1, 40.0), (2, 10.0), (3, 20.0)):
        client.log_metric(run_id, "val_top1_error", error, step=epoch)
        client.log_metric(run_id, "train_loss", 1.0 / epoch, step=epoch)
    checkpoints = _run_folder(tmp_path / "runs" / "r1", {1: 40.0, 2: 10.0, 3: 20.0}, spec)
    best = best_checkpoint(tmp_path / "runs" / "r1", "val_top1_error", "min")
    assert best is not None

    handed = log_best_model(spec, uri, run_id, Path(best), "tiny-colours-1")

    assert handed.epoch == 2 and handed.registered == "models:/tiny-colours@best"
    assert handed.decision == (
        "tiny-colours version 1: promoted (val_top1_error = 10): no version held the alias"
    )
    # `--resume` of the finished run, nothing better trained: the same version, no new model.
    again = log_best_model(spec, uri, run_id, Path(best), "tiny-colours-1")
    assert (again.version, again.model_uri) == ("1", handed.model_uri)
    assert again.decision and "unchanged" in again.decision
    logged_models = client.search_logged_models(experiment_ids=[experiment])
    assert len(logged_models) == 1
    model_id = handed.model_uri.removeprefix("models:/")
    logged = client.get_logged_model(model_id)
    # Linked to the best epoch's metrics (what the model page lists), not step 0's.
    assert {(m.key, m.step, m.value) for m in logged.metrics} == {
        ("val_top1_error", 2, 10.0),
        ("train_loss", 2, 0.5),
    }
    mlflow.set_tracking_uri(uri)
    try:
        info = mlflow.models.get_model_info("models:/tiny-colours@best")
        loaded = mlflow.pytorch.load_model("models:/tiny-colours@best")
        local = Path(mlflow.artifacts.download_artifacts(handed.model_uri, dst_path=str(tmp_path)))
    finally:
        mlflow.set_tracking_uri(None)
    assert info.model_id == model_id
    inputs = info.signature.inputs.to_dict()[0]
    # Any batch, height and width: what multi-scale testing feeds it.
    assert inputs["tensor-spec"] == {"dtype": "float32", "shape": (-1, 3, -1, -1)}
    assert info.metadata == {"min_image_side": 5}
    assert (local / "input_example.json").is_file()
    pins = (local / "requirements.txt").read_text().split()
    assert f"resnetctl=={metadata.version('resnetctl')}" in pins
    assert f"torch=={torch.__version__.split('+')[0]}" in pins
    assert any(p.startswith("torchvision==") for p in pins)

    images = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        logits = loaded(images)
        best_logits = load_model(str(checkpoints[2])).model(images)
        last_logits = load_model(str(checkpoints[3])).model(images)
    torch.testing.assert_close(logits, best_logits)
    assert not torch.allclose(logits, last_logits, atol=1e-3)
    best_network = load_model(str(checkpoints[2])).model
    # The exported program takes the sizes of multi-scale testing (16..46 for a 16-pixel crop),
    # other aspect ratios, and everything down to the least side its metadata names.
    for height, width in ((5, 5), (18, 27), (46, 34), (91, 64), (7, 200)):
        images = torch.randn(2, 3, height, width)
        with torch.no_grad():
            torch.testing.assert_close(loaded(images), best_network(images))
    with pytest.raises(AssertionError, match="Guard failed"), torch.no_grad():
        loaded(torch.randn(2, 3, 4, 16))  # a 1 x 1 last feature map: below the range


def test_requirements_pin_what_is_installed() -> None:
    pins = dict(line.split("==") for line in requirements())
    assert pins["resnetctl"] == metadata.version("resnetctl")
    assert pins["torchvision"] == metadata.version("torchvision").split("+")[0]


@pytest.mark.parametrize(
    ("name", "least"), [("cifar_resnet20", 5), ("resnet18", 33), ("resnet50", 33)]
)
def test_the_least_image_side_is_one_more_than_the_networks_stride(name: str, least: int) -> None:
    network = create_model(name, num_classes=3).eval()
    assert min_image_side(network) == least
    # At that side the last stage's feature map is 2 x 2; one less and it is 1 x 1.
    maps: list[int] = []
    network.avgpool.register_forward_pre_hook(lambda _m, args: maps.append(args[0].shape[-1]))
    with torch.no_grad():
        network(torch.zeros(1, 3, least, least))
        network(torch.zeros(1, 3, least - 1, least - 1))
    assert maps == [2, 1]
