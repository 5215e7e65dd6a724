"""After the sweep: the table of final errors, Fig. 6, the verdicts, checkpoints and Fig. 7 on
the MLflow runs. The sweep's outcome is built by hand (MLflow runs and checkpoints as the tune
package leaves them), so no Ray starts."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resnetctl.models import create_model
from resnetctl.reproduce import Experiment, plan, summarise
from resnetctl.reproduce.results import (
    NetResult,
    degradation_verdicts,
    plot_figure6,
    shortcut_verdicts,
    table_markdown,
)
from resnetctl.train.checkpoint import save_checkpoint

TINY = """\
name: tiny-reproduce
model: {name: cifar_resnet8, shortcut: A}
data:
  source: {kind: synthetic, num_classes: 4, train_per_class: 8, val_per_class: 2,
           image_size: [16, 16], seed: 5}
  pipeline: {kind: cifar, pad: 2, crop: 16}
  threads: 1
train: {epochs: 3, global_batch_size: 8, base_lr: 0.1, lr_reference_batch: 8}
resources: {workers: 1, cpus_per_worker: 1}
checkpoint: {every_n_epochs: 1, keep: 1, metric: val_top1_error_pct}
tracking: {experiment: reproduce, uri: URI}
"""

#: Final training error (%) per net over three epochs: plain degrades, ResNet does not.
TRAIN = {
    "cifar_plain8": [80, 40, 10],
    "cifar_plain14": [90, 70, 30],
    "cifar_resnet8-A": [70, 20, 5],
    "cifar_resnet14-A": [75, 15, 2],
}


def net(label: str, variant: str, depth: int, train: float | None, test: float | None) -> NetResult:
    return NetResult(
        label,
        "m",
        depth,
        variant,
        None if variant == "plain" else "A",
        270_000,
        3,
        66,
        train,
        test,
        test,
        12.0,
        "finished",
        "t",
        "r",
    )


def test_verdicts_follow_the_final_training_errors() -> None:
    nets = [
        net("plain-20", "plain", 20, 1.0, 2.0),
        net("plain-56", "plain", 56, 7.5, 9.0),
        net("ResNet-20 (A)", "residual", 20, 0.5, 1.0),
        net("ResNet-56 (A)", "residual", 56, 0.5, 0.8),
    ]
    plain, resnet = degradation_verdicts(nets)
    assert "plain-56 final training error 7.50% vs plain-20 1.00% (+6.50 points)" in plain
    assert plain.endswith("degradation shown")
    assert resnet.endswith("deeper ResNet no worse")  # a tie counts as no worse
    nets[3].final_train_error = 0.6
    assert degradation_verdicts(nets)[1].endswith("deeper ResNet WORSE")
    nets[1].final_train_error = 0.9
    assert degradation_verdicts(nets)[0].endswith("degradation NOT shown")
    assert "plain-20 2.00%" in shortcut_verdicts(nets[:2])[0]


def test_the_table_has_one_row_per_net_in_percent() -> None:
    table = table_markdown([net("plain-20", "plain", 20, 1.234, None)])
    header, _, row = table.strip().splitlines()
    assert "final train error (%)" in header and "final test error (%)" in header
    assert row.startswith("| plain-20 | 0.27M | 3 | 66 | 1.23 | - |")


def test_figure6_is_a_png_with_a_panel_per_kind(tmp_path: Path) -> None:
    a = net("plain-20", "plain", 20, 1.0, 2.0)
    b = net("ResNet-20 (A)", "residual", 20, 1.0, 2.0)
    a.curves = b.curves = {
        "train_top1_error": [(1, 50.0), (2, 10.0)],
        "val_top1_error": [(1, 40.0), (2, 12.0)],
    }
    path = plot_figure6([a, b], tmp_path / "fig6.png", kind="degradation")
    assert path.read_bytes()[:4] == b"\x89PNG"


@pytest.fixture
def finished_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sqlite_store: str):
    """A planned 2-depth degradation sweep whose trials 'ran': child runs with per-epoch
    metrics under the parent run, and checkpoints in the sweep's storage."""
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    uri = sqlite_store
    base = tmp_path / "tiny.yaml"
    base.write_text(TINY.replace("URI", uri))
    experiment = Experiment(
        kind="degradation",
        depths=[8, 14],
        variants=["plain", "residual"],
        shortcuts=None,
        base=base,
        name="tiny-degr",
    )
    record = plan(experiment)
    client = MlflowClient(uri)
    exp_id = client.create_experiment("reproduce", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp_id, run_name=record.name).info.run_id
    record.parent_run_id = parent
    rows = []
    for index, point in enumerate(record.space.models):
        config = {"model": point.as_config()}
        spec = record.trial_spec(config)
        trial = f"t_{index:05d}"
        child = client.create_run(
            exp_id, run_name=point.label, tags={"mlflow.parentRunId": parent}
        ).info.run_id
        val = [e + 3.0 for e in TRAIN[point.label]]
        for epoch, (tr, va) in enumerate(zip(TRAIN[point.label], val, strict=True), 1):
            client.log_metric(child, "train_top1_error", tr, step=epoch)
            client.log_metric(child, "val_top1_error", va, step=epoch)
        torch.manual_seed(index)
        model = create_model(spec.model.name, **spec.model.create_options(4))
        save_checkpoint(
            record.train_storage / trial / "epoch_0003",
            {"model": model.state_dict()},
            {"epoch": 3, "metrics": {"val_top1_error": val[-1]}},
        )
        rows.append(
            SimpleNamespace(
                label=point.label,
                trial_id=trial,
                run_id=child,
                seconds=5.0,
                status="finished",
                config=config,
            )
        )
    outcome = SimpleNamespace(
        record=record,
        rows=rows,
        parent_run_id=parent,
        parent_url=uri,
        interrupted=False,
        seconds=9.0,
    )
    return experiment, outcome, client


def test_summarise_writes_and_logs_the_table_and_figures(finished_sweep, tmp_path: Path) -> None:
    experiment, outcome, client = finished_sweep
    report = summarise(experiment, outcome, out_dir=tmp_path / "out", analyze=True)

    assert [n.label for n in report.nets] == [
        "plain-8",
        "plain-14",
        "ResNet-8 (A)",
        "ResNet-14 (A)",
    ]
    assert [n.final_train_error for n in report.nets] == [10, 30, 5, 2]
    assert [n.best_test_error for n in report.nets] == [13, 33, 8, 5]
    assert report.nets[0].iterations == 3 * 4  # 32 images / batch 8 = 4 steps per epoch
    assert report.nets[0].params == report.nets[2].params  # option A adds no parameters
    assert report.verdicts[0].endswith("degradation shown")
    assert report.verdicts[1].endswith("deeper ResNet no worse")

    names = {p.name for p in report.files}
    assert {
        "degradation.csv",
        "degradation.md",
        "degradation.png",
        "layer_responses.md",
        "layer_responses_compare.png",
        "layer_responses_compare.csv",
    } <= names
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out/degradation.csv").read_text())))
    assert [r["label"] for r in rows][:2] == ["plain-8", "plain-14"]
    assert float(rows[1]["final_train_error"]) == 30

    parent = {a.path for a in client.list_artifacts(outcome.parent_run_id, "reproduce")}
    assert {
        "reproduce/degradation.csv",
        "reproduce/degradation.md",
        "reproduce/degradation.png",
        "reproduce/layer_responses_compare.png",
    } <= parent
    for row in outcome.rows:  # each child: its checkpoint (for `analyze`) and its Fig. 7
        assert "checkpoints/best/state.pt" in {
            a.path for a in client.list_artifacts(row.run_id, "checkpoints/best")
        }
        assert "analysis/layer_responses.csv" in {
            a.path for a in client.list_artifacts(row.run_id, "analysis")
        }
    assert [r["layers"] for r in report.responses] == [7, 13, 7, 13]
    assert client.get_run(outcome.parent_run_id).data.tags["resnetctl.reproduce"] == "degradation"
    assert report.as_dict()["x_axis"] == "epoch"
