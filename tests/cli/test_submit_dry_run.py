"""`resnetctl submit --dry-run`: every job in jobs/ plans, with figures from the registry; bad
input exits 2 naming the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from resnetctl.models import count_macs, count_parameters, create_model
from resnetctl.spec import load_spec
from tests.conftest import JOBS


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny ImageNet-layout folder: 2 classes, 4 train and 2 val JPEGs each."""
    root = tmp_path_factory.mktemp("imagenet")
    for split, count in (("train", 4), ("val", 2)):
        for label in ("n01", "n02"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                colour = (40 * i, 200 if label == "n01" else 20, 90)
                Image.new("RGB", (40, 30), colour).save(folder / f"{i}.JPEG")
    return root


@pytest.mark.parametrize("path", sorted(JOBS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_job_dry_runs_with_registry_figures(cli, path: Path, image_folder, monkeypatch):
    monkeypatch.setenv("RESNETCTL_IMAGENET", str(image_folder))
    monkeypatch.setenv("RESNETCTL_CIFAR10", str(image_folder))
    overrides = ["resources.use_gpu=false"]  # this machine has no GPU: plan the CPU variant
    outcome = cli(
        "submit", str(path), "--dry-run", "--json", *sum((["--set", o] for o in overrides), [])
    )
    assert outcome.code == 0, outcome.stderr
    plan = json.loads(outcome.stdout)["plan"]
    spec = load_spec(path, overrides)
    with torch.device("meta"):  # sizes only: no weights, no arithmetic
        model = create_model(spec.model.name, **spec.model.create_options(plan["num_classes"]))
    assert plan["model"] == spec.model.name
    assert plan["params"] == count_parameters(model)
    assert plan["macs_per_image"] == count_macs(model, spec.pipeline.crop)
    workers = spec.resources.workers
    assert plan["global_batch"] == spec.train.global_batch(workers)
    assert plan["per_worker_batch"] * workers == plan["global_batch"]
    length, unit = spec.train.length
    expected_total = length * plan["steps_per_epoch"] if unit == "epoch" else length
    assert plan["total_steps"] == expected_total
    assert (
        plan["training_flops"] == 6 * plan["macs_per_image"] * plan["global_batch"] * expected_total
    )


def test_dry_run_prints_a_readable_plan(cli) -> None:
    outcome = cli("submit", str(JOBS / "quickstart.yaml"), "--dry-run")
    assert outcome.code == 0, outcome.stderr
    for label in ("parameters", "multiply-adds / image", "steps per epoch", "training FLOPs"):
        assert label in outcome.stdout
    assert "269,722" in outcome.stdout  # CIFAR ResNet-20 with 10 classes (Table 6: 0.27M)
    assert "1,437 train, 360 val" in outcome.stdout  # the digits split


def test_gpus_asked_where_none_exist(cli, image_folder, monkeypatch) -> None:
    monkeypatch.setenv("RESNETCTL_IMAGENET", str(image_folder))
    outcome = cli("submit", str(JOBS / "r50.yaml"), "--dry-run")
    assert outcome.code == 2
    assert "r50.yaml:" in outcome.stderr and "resources.use_gpu" in outcome.stderr
    assert "needs 8 GPUs but this machine has 0" in outcome.stderr


@pytest.mark.parametrize("layout", ["missing", "empty"])
def test_data_folder_missing_or_without_classes(cli, tmp_path: Path, layout: str) -> None:
    root = tmp_path / "data"
    if layout == "empty":
        (root / "train").mkdir(parents=True)
        (root / "val").mkdir()
    outcome = cli(
        "submit",
        str(JOBS / "cifar-r20.yaml"),
        "--dry-run",
        "--set",
        f"data.source.root={root}",
        "--set",
        "resources.use_gpu=false",
    )
    assert outcome.code == 2
    assert f"--set data.source.root={root}: data.source.root:" in outcome.stderr
    expected = "does not exist" if layout == "missing" else "has no class sub-folders"
    assert expected in outcome.stderr


def test_dry_run_on_a_cluster_config_says_which_nodes(cli, image_folder, monkeypatch) -> None:
    fits = cli(
        "submit",
        str(JOBS / "quickstart.yaml"),
        "--dry-run",
        "--json",
        "--cluster",
        str(JOBS.parent / "cluster" / "local.yaml"),
    )
    assert fits.code == 0, fits.stderr
    plan = json.loads(fits.stdout)
    assert plan["fits"] and plan["nodes"] == 2
    assert [(a["node_type"], a["nodes"]) for a in plan["allocations"]] == [("cpu.1", 2)]
    monkeypatch.setenv("RESNETCTL_IMAGENET", str(image_folder))
    too_big = cli(
        "submit",
        str(JOBS / "r50.yaml"),
        "--dry-run",
        "--cluster",
        str(JOBS.parent / "cluster" / "local.yaml"),
    )
    assert too_big.code == 2  # a CPU-only cluster cannot supply 8 GPU workers
