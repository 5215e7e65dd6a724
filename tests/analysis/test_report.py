"""Fig. 7 end to end without Ray: find trained runs (MLflow run id, run name, checkpoint
directory), measure them on validation data, write CSV and PNG files, log them to MLflow."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

from resnetctl.analysis import AnalysisError, load_trained, measure, write_report
from resnetctl.analysis.plots import plot_layer_responses
from resnetctl.cli.analyze import analyze
from resnetctl.models import create_model
from resnetctl.spec import dump_spec
from resnetctl.spec.loader import load_spec_text
from resnetctl.train.checkpoint import save_checkpoint
from tests.analysis.conftest import copy_store

TINY = """\
name: tiny-analysis
model: {name: MODEL}
data:
  source: {kind: synthetic, num_classes: 4, train_per_class: 4, val_per_class: 3,
           image_size: [16, 16], seed: 3}
  pipeline: {kind: cifar, pad: 2, crop: 16}
  threads: 1
train: {epochs: 1, batch_size_per_worker: 4, base_lr: 0.1, lr_reference_batch: 4}
resources: {workers: 1, cpus_per_worker: 1}
tracking: {experiment: analysis}
"""


def tiny_spec(model: str = "cifar_resnet8", extra: str = ""):
    return load_spec_text(TINY.replace("MODEL", model) + extra, "tiny.yaml")


def trained_run(uri: str, folder: Path, spec, seed: int = 0) -> tuple[str, dict]:
    """An MLflow run as `submit` leaves it: the resolved spec and a checkpoints/best artifact
    (made with the client directly: `JobRun.start` also gathers environment tags, slowly)."""
    from mlflow import MlflowClient

    torch.manual_seed(seed)
    model = create_model(spec.model.name, **spec.model.create_options(4))
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("analysis")
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment("analysis", artifact_location=(folder / "artifacts").as_uri())
    )
    run_id = client.create_run(experiment_id, run_name=spec.name).info.run_id
    client.log_text(run_id, dump_spec(spec), "spec/resolved.yaml")
    checkpoint = save_checkpoint(
        folder / f"ckpt-{run_id}",
        {"model": model.state_dict()},
        {"epoch": 3, "model": spec.model.name},
    )
    client.log_artifacts(run_id, str(checkpoint), "checkpoints/best")
    client.set_terminated(run_id, "FINISHED")
    return run_id, model.state_dict()


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("store")


@pytest.fixture(scope="module")
def store(store_dir: Path, mlflow_template: Path) -> str:
    """One small sqlite tracking store for the module's runs."""
    return copy_store(mlflow_template, store_dir)


@pytest.fixture(scope="module")
def pair(store: str, store_dir: Path) -> dict[str, tuple[str, dict]]:
    """A trained ResNet-8 and plain-8 (random weights: the analysis does not care)."""
    return {
        "resnet": trained_run(store, store_dir, tiny_spec("cifar_resnet8"), seed=0),
        "plain": trained_run(store, store_dir, tiny_spec("cifar_plain8"), seed=1),
    }


def artifacts(uri: str, run_id: str, folder: str = "analysis") -> set[str]:
    from mlflow import MlflowClient

    return {a.path for a in MlflowClient(uri).list_artifacts(run_id, folder)}


def test_a_run_id_is_measured_on_its_validation_split_and_logged(
    store: str, pair: dict, tmp_path: Path
) -> None:
    run_id, weights = pair["resnet"]
    trained = load_trained(run_id, tracking_uri=store)
    assert trained.label == "ResNet-8 (A)" and trained.run_id == run_id and trained.epoch == 3
    assert str(trained.checkpoint) == f"mlflow:{run_id}/checkpoints/best"
    for key, value in weights.items():
        assert torch.equal(trained.model.state_dict()[key], value)

    result = measure(trained)
    assert len(result.responses) == 7 and result.images == 12  # 4 classes x 3 val images
    files = write_report([result], tmp_path / "out")
    assert [p.name for p in files] == ["layer_responses.csv", "layer_responses.png"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in files)
    assert {"analysis/layer_responses.csv", "analysis/layer_responses.png"} <= artifacts(
        store, run_id
    )
    rows = list(csv.DictReader(io.StringIO(files[0].read_text())))
    assert [int(r["index"]) for r in rows] == list(range(1, 8))
    assert float(rows[0]["std"]) == pytest.approx(result.responses[0].std, rel=1e-5)
    assert sorted(int(r["sorted_rank"]) for r in rows) == list(range(1, 8))


def test_several_runs_are_overlaid_and_the_overlay_goes_to_each(
    store: str, pair: dict, tmp_path: Path
) -> None:
    resnet, plain = pair["resnet"][0], pair["plain"][0]
    results = [measure(load_trained(r, tracking_uri=store)) for r in (plain, resnet)]
    assert [r.label for r in results] == ["plain-8", "ResNet-8 (A)"]
    files = write_report(results, tmp_path / "out")
    names = {p.relative_to(tmp_path / "out").as_posix() for p in files}
    assert names == {
        "plain-8/layer_responses.csv",
        "plain-8/layer_responses.png",
        "ResNet-8_A/layer_responses.csv",
        "ResNet-8_A/layer_responses.png",
        "layer_responses_compare.csv",
        "layer_responses_compare.png",
    }
    for run_id in (plain, resnet):
        assert "analysis/layer_responses_compare.png" in artifacts(store, run_id)
    long = list(
        csv.DictReader(io.StringIO((tmp_path / "out/layer_responses_compare.csv").read_text()))
    )
    assert len(long) == 14 and {r["label"] for r in long} == {"plain-8", "ResNet-8 (A)"}


def test_a_checkpoint_directory_without_a_run_infers_the_shortcut(
    store: str, tmp_path: Path
) -> None:
    model = create_model("cifar_resnet8", shortcut="B", num_classes=4)
    folder = save_checkpoint(
        tmp_path / "ckpt", {"model": model.state_dict()}, {"epoch": 1, "model": "cifar_resnet8"}
    )
    trained = load_trained(str(folder), tracking_uri=store)
    assert trained.run_id is None and trained.spec is None
    assert trained.model.layer2[0].downsample is not None  # option B's projection
    with pytest.raises(AnalysisError, match="no spec"):
        measure(trained)
    # With a spec for its data, it is measured; files are written but nothing is logged.
    trained.spec = tiny_spec(extra="")
    result = measure(trained)
    assert len(result.responses) == 7
    write_report([result], tmp_path / "out")
    assert result.logged == []


def test_a_run_name_under_the_storage_root_finds_its_run(
    store: str, pair: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from resnetctl.storage import RunRecord

    storage = tmp_path / "runs"
    monkeypatch.setenv("RESNETCTL_STORAGE", str(storage))
    run_id = pair["plain"][0]
    RunRecord("tiny-1", "tiny-analysis", store, run_id).save(storage)
    model = create_model("cifar_plain8", num_classes=4)
    for epoch in (1, 2):
        save_checkpoint(
            storage / "tiny-1" / f"epoch_{epoch:04d}",
            {"model": model.state_dict()},
            {"epoch": epoch, "metrics": {"val_top1_error": 50.0 - epoch}},
        )
    trained = load_trained("tiny-1", tracking_uri=store)
    assert trained.run_id == run_id and trained.label == "plain-8"
    assert trained.checkpoint == storage / "tiny-1" / "epoch_0002"  # best val error


def test_unknown_targets_say_what_was_tried(store: str) -> None:
    with pytest.raises(AnalysisError, match="neither a checkpoint"):
        load_trained("no-such-run", tracking_uri=store)


def test_the_plot_is_a_png(tmp_path: Path) -> None:
    path = plot_layer_responses(
        {"plain-20": [1.0, 2.0, 1.5], "ResNet-20": [0.5, 0.4, 0.6]},
        tmp_path / "f" / "fig7.png",
        title="t",
    )
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_command_logs_to_each_run(
    store: str, pair: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = pair["resnet"][0], pair["plain"][0]
    app = typer.Typer()
    app.command()(analyze)
    result = CliRunner().invoke(
        app,
        [first, second, "--tracking-uri", store, "--out", "fig7", "--max-images", "5"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "| plain-8 | 7 | 5 |" in result.stdout
    assert (tmp_path / "fig7" / "layer_responses_compare.png").is_file()
    assert "analysis/layer_responses.png" in artifacts(store, second)

    missing = CliRunner().invoke(app, ["nope", "--tracking-uri", store])
    assert missing.exit_code == 2 and "neither a checkpoint" in missing.stderr
