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
    monkeypatch.setattr("resnetctl.host.usable_cpus", lambda: 2)
    # This machine has no GPU and 2 CPUs, the folder 8 training images: plan what fits here.
    overrides = [
        "resources.use_gpu=false",
        "resources.workers=2",
        "resources.cpus_per_worker=1",
        "train.global_batch_size=4",
    ]
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


def test_a_tune_file_submitted_says_its_search_is_left_out(cli, tmp_path: Path) -> None:
    spec = tmp_path / "tune.yaml"
    spec.write_text(
        (JOBS / "quickstart.yaml").read_text() + "search:\n  train.base_lr: {grid: [0.05, 0.1]}\n"
    )
    outcome = cli("submit", str(spec), "--dry-run")
    assert outcome.code == 0, outcome.stderr
    assert "has a `search:` section, which `resnetctl tune` runs" in outcome.stderr
    assert "search" not in outcome.stdout  # the plan is the base spec's
    plain = cli("submit", str(JOBS / "quickstart.yaml"), "--dry-run")
    assert "search" not in plain.stderr


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


def test_dry_run_refuses_more_workers_than_the_embedded_ray_holds(
    cli, tmp_path, monkeypatch
) -> None:
    """Issue 16: 64 workers were planned on a 2-core machine without a word."""
    monkeypatch.setattr("resnetctl.host.usable_cpus", lambda: 2)
    job = tmp_path / "job.yaml"
    job.write_text((JOBS / "quickstart.yaml").read_text().replace("workers: 2", "workers: 64"))
    outcome = cli("submit", str(job), "--dry-run", "--set", "train.global_batch_size=64")
    assert outcome.code == 2
    line = next(
        n for n, text in enumerate(job.read_text().splitlines(), 1) if "workers: 64" in text
    )
    assert f"error: {job}:{line}: resources.workers: 64 workers x 1 CPUs" in outcome.stderr
    assert "may use 2 CPUs" in outcome.stderr
    quickstart = str(JOBS / "quickstart.yaml")
    halves = cli("submit", quickstart, "--dry-run", "--set", "resources.cpus_per_worker=1.5")
    assert halves.code == 2 and "2 workers x 1.5 CPUs" in halves.stderr  # one bundle fits, not 2
    assert cli("submit", quickstart, "--dry-run").code == 0


def test_dry_run_refuses_a_batch_larger_than_the_folders_shard(cli, image_folder) -> None:
    # The folder holds 8 training images: 4 per worker for the two workers of cifar-r20.
    job = str(JOBS / "cifar-r20.yaml")
    common = ["--dry-run", "--set", f"data.source.root={image_folder}"]
    common += ["--set", "resources.use_gpu=false"]
    outcome = cli("submit", job, *common)
    assert outcome.code == 2
    assert f"{job}:24: train.global_batch_size: train.global_batch_size gives a batch of 64" in (
        outcome.stderr
    )
    assert "(8 images / 2 workers = 4)" in outcome.stderr
    assert cli("submit", job, *common, "--set", "train.global_batch_size=8").code == 0


def test_dry_run_refuses_a_cifar_crop_beyond_the_folders_padded_images(cli, image_folder) -> None:
    # The folder's images are 40 wide and 30 high: a 32 crop needs padding.
    job = str(JOBS / "cifar-r20.yaml")
    common = ["--dry-run", "--set", f"data.source.root={image_folder}"]
    common += ["--set", "resources.use_gpu=false", "--set", "train.global_batch_size=8"]
    outcome = cli("submit", job, *common, "--set", "data.pipeline.pad=0")
    assert outcome.code == 2
    assert f"{job}:20: data.pipeline.crop: data.pipeline.crop 32 is larger than the padded " in (
        outcome.stderr
    )
    assert "(30x40 + 2 x pad 0 = 30)" in outcome.stderr
    assert cli("submit", job, *common, "--set", "data.pipeline.pad=1").code == 0


def test_dry_run_refuses_epoch_milestones_beyond_an_iteration_run(cli, image_folder) -> None:
    # 8 images, 2 per worker on 2 workers: 2 steps per epoch, so 2 iterations end in epoch 1.
    job = str(JOBS / "cifar-r20.yaml")
    common = ["--dry-run", "--set", f"data.source.root={image_folder}"]
    common += ["--set", "resources.use_gpu=false", "--set", "train.global_batch_size=4"]
    common += ["--set", "train.iterations=2"]
    outcome = cli("submit", job, *common, "--set", "train.schedule.unit=epoch")
    assert outcome.code == 2
    assert f"{job}:32: train.schedule.milestones: train.schedule.milestones [32000, 48000]" in (
        outcome.stderr
    )
    assert "(epochs) lie outside the run of 2 iterations (1 epochs of 2 steps)" in outcome.stderr


def test_placement_needs_no_data_path_variable(cli, monkeypatch) -> None:
    # A cluster's data path is the cluster's: planning where the job goes must not need it here.
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    aws = str(JOBS.parent / "cluster" / "aws.yaml")
    planned = cli("submit", str(JOBS / "r50.yaml"), "--dry-run", "--cluster", aws)
    assert planned.code == 0, planned.stderr
    assert "fits: 1 worker node(s)" in planned.stdout
    assert "warning: " in planned.stderr and "${RESNETCTL_IMAGENET} is not set" in planned.stderr
    # Running it here still needs the variable.
    refused = cli("submit", str(JOBS / "r50.yaml"), "--dry-run")
    assert refused.code == 2 and "error: " in refused.stderr


def test_dry_run_on_packed_shards_plans_from_the_manifest(cli, image_folder, tmp_path) -> None:
    packed = tmp_path / "packed"
    assert cli("data", "pack", str(image_folder), str(packed), "--shard-size", "64KiB").code == 0
    job = str(JOBS / "cifar-r20.yaml")
    common = ["--dry-run", "--json", "--set", "data.source.kind=shards"]
    common += ["--set", f"data.source.root={packed}", "--set", "resources.use_gpu=false"]
    outcome = cli("submit", job, *common, "--set", "train.global_batch_size=8")
    assert outcome.code == 0, outcome.stderr
    plan = json.loads(outcome.stdout)["plan"]
    assert plan["num_classes"] == 2 and plan["steps_per_epoch"] == 1  # 8 images, batch 8
    # The smallest image (30x40, from the manifest) is checked against the CIFAR crop.
    small = cli("submit", job, *common, "--set", "train.global_batch_size=8",
                "--set", "data.pipeline.pad=0")  # fmt: skip
    assert small.code == 2 and "(30x40 + 2 x pad 0 = 30)" in small.stderr
    missing = cli("submit", job, *common, "--set", f"data.source.root={tmp_path}")
    assert missing.code == 2
    assert f"data.source.root: {tmp_path}/manifest.json does not exist" in missing.stderr


def test_dry_run_of_an_elastic_range_prints_the_plan_at_both_ends(cli, tmp_path: Path) -> None:
    job = tmp_path / "elastic.yaml"
    job.write_text(
        (JOBS / "quickstart.yaml").read_text().replace("workers: 2", "workers: {min: 1, max: 2}")
    )
    outcome = cli("submit", str(job), "--dry-run")
    assert outcome.code == 0, outcome.stderr
    assert "1-2 x cpu (elastic: keep_global_batch)" in outcome.stdout
    # The quickstart's 64 images a step at lr 0.2 x 64 / 128, at both ends of the range.
    assert "at 2 workers" in outcome.stdout and "at 1 worker " in outcome.stdout
    assert "32 per worker x 1 accumulation = 64 global, peak lr 0.1" in outcome.stdout
    assert "32 per worker x 2 accumulation = 64 global, peak lr 0.1" in outcome.stdout
    scale_lr = ["--set", "resources.elastic_policy=scale_lr"]
    refused = cli("submit", str(job), "--dry-run", *scale_lr)
    # The quickstart warms up over 20 iterations: another amount of data at each count.
    assert refused.code == 2 and "give train.warmup.length in epochs" in refused.stderr
    in_epochs = ["--set", "train.warmup.unit=epoch", "--set", "train.warmup.length=1"]
    scaled = cli("submit", str(job), "--dry-run", "--json", *scale_lr, *in_epochs)
    assert scaled.code == 0, scaled.stderr
    ends = json.loads(scaled.stdout)["plan"]["ends"]
    assert [(e["workers"], e["global_batch"], e["peak_lr"]) for e in ends] == [
        (2, 64, 0.1),
        (1, 32, 0.05),
    ]


def test_dry_run_refuses_a_range_with_counts_that_cannot_split_the_batch(
    cli, tmp_path: Path
) -> None:
    job = tmp_path / "elastic.yaml"
    job.write_text(
        (JOBS / "quickstart.yaml").read_text().replace("workers: 2", "workers: {min: 3, max: 4}")
    )
    outcome = cli("submit", str(job), "--dry-run")
    assert outcome.code == 2
    line = next(n for n, text in enumerate(job.read_text().splitlines(), 1) if "min: 3" in text)
    assert f"{job}:{line}: resources.workers:" in outcome.stderr
    assert "global batch 64 has no whole split" in outcome.stderr
    assert "at 3 workers" in outcome.stderr
