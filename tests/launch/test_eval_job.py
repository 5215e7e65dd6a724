"""`resnetctl eval` as a Ray job, after a real (tiny) run: 2 workers count what 1 counts on
every protocol, and the registered model (an exported program) takes multi-scale's sizes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from resnetctl.data.synthetic import class_name, synthetic_image
from tests.launch.conftest import resnetctl, two_node_cluster

pytestmark = pytest.mark.slow

CLASSES = 3
#: Validation images of four aspect ratios, so multi-scale fills buckets of several shapes.
SHAPES = ((24, 24), (24, 32), (32, 24), (22, 34))

JOB = """\
name: quickstart
model: {{name: cifar_resnet8}}
data:
  source: {{kind: imagefolder, root: {root}}}
  pipeline: {{kind: imagenet, crop: 16, scale_range: [16, 24], val_resize: 18, val_crop: 16}}
  threads: 1
train:
  epochs: 2
  batch_size_per_worker: 8
  base_lr: 0.1
  lr_reference_batch: 16
  schedule: {{kind: constant}}
resources: {{workers: 2, cpus_per_worker: 1}}
tracking: {{experiment: e2e}}
"""


def _image_folder(root: Path) -> Path:
    """`train/` (16 per class) and `val/` (7 per class, 21 images: the 2 workers' shards
    differ in size) of synthetic JPEGs in the four shapes."""
    from PIL import Image

    for split, count in (("train", 16), ("val", 7)):
        for label in range(CLASSES):
            folder = root / split / class_name(label)
            folder.mkdir(parents=True)
            for i in range(count):
                height, width = SHAPES[(i + label) % len(SHAPES)]
                rng = np.random.default_rng([len(split), label, i])
                pixels = synthetic_image(rng, label, CLASSES, height, width)
                Image.fromarray(pixels).save(folder / f"{i:03d}.jpg", quality=90)
    return root


def _eval(workdir: Path, *args: str) -> dict:
    done = resnetctl("eval", *args, "--json", cwd=workdir)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_eval_counts_alike_on_1_and_2_workers_and_takes_the_registered_model(
    tmp_path: Path,
) -> None:
    from mlflow import MlflowClient

    root = _image_folder(tmp_path / "data")
    (tmp_path / "job.yaml").write_text(JOB.format(root=root))
    trained = resnetctl("submit", "job.yaml", "--json", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    run = json.loads(trained.stdout)
    assert run["registered_model"] == "models:/quickstart@best"

    one = _eval(tmp_path, run["run_name"], "--workers", "1")
    two = _eval(tmp_path, run["run_name"], "--workers", "2", "--no-log")
    assert (one["workers"], two["workers"]) == (1, 2)
    assert one["logged"] is True and two["logged"] is False
    for a, b in zip(one["results"], two["results"], strict=True):
        assert a["protocol"] == b["protocol"]
        assert a["images"] == b["images"] == 21, (a, b)  # every image, once
        assert a["top1_error_pct"] == b["top1_error_pct"], (a, b)
        assert a["top5_error_pct"] == b["top5_error_pct"], (a, b)
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
    assert [r["protocol"] for r in one["results"]] == ["center", "ten_crop", "multi_scale"]
    # `center` is the run's own validation at the checkpoint's epoch, logged beside it.
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(store)
    metrics = client.get_run(run["mlflow_run_id"]).data.metrics
    center = one["results"][0]
    assert metrics["eval_top1_error_center_pct"] == center["top1_error_pct"]
    best = run["metrics"]["best_val_top1_error_pct"]
    assert center["top1_error_pct"] == pytest.approx(best)
    assert metrics["eval_loss_multi_scale"] == one["results"][2]["loss"]

    # The registered model is an exported program: multi-scale feeds it whole images at five
    # sizes and four aspect ratios, split over two workers that each load it from MLflow.
    logged = _eval(tmp_path, "models:/quickstart@best", "-p", "multi_scale", "--no-log")
    (exported,) = logged["results"]
    checkpoint = one["results"][2]
    assert exported["images"] == 21 and logged["workers"] == 2  # one per CPU of the machine
    assert exported["top1_error_pct"] == checkpoint["top1_error_pct"]
    assert exported["loss"] == pytest.approx(checkpoint["loss"], rel=1e-5)
    assert logged["run_id"] == run["mlflow_run_id"]

    # On a cluster, joined as its driver: a worker on each of its two nodes, the same counts.
    (tmp_path / "cluster-logs").mkdir()
    with two_node_cluster(tmp_path / "cluster-logs") as nodes:
        joined = _eval(tmp_path, run["run_name"], "--address", nodes.gcs, "--no-log")
    assert (joined["workers"], joined["nodes"]) == (2, 2)  # the run's workers, spread
    for a, b in zip(one["results"], joined["results"], strict=True):
        assert (a["images"], a["top1_error_pct"]) == (b["images"], b["top1_error_pct"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5), (a, b)
