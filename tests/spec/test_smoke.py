"""`submit --smoke`: the transform keeps what the recipe is and shrinks what it costs; every
job in jobs/ trains through the real worker loop (model, DALI CPU pipeline, optimiser,
schedule, checkpoints) in its smoke form."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from resnetctl.spec import SpecError, load_spec
from resnetctl.spec.loader import load_spec_text
from resnetctl.spec.smoke import BATCH, EPOCHS, STEPS_PER_EPOCH, smoke_spec
from resnetctl.train.runner import Placement, Runner
from tests.conftest import JOBS
from tests.spec.test_loader import GOOD

ALL_JOBS = sorted(JOBS.glob("*.yaml"))
IMAGENET_JOBS = [p for p in ALL_JOBS if p.stem in ("r18", "r34", "r50", "r101", "r152")] + [
    p for p in ALL_JOBS if p.stem in ("plain18", "plain34")
]
ROOT = ["data.source.root=/nowhere"]  # replaced by the smoke source: never read


def load_as_smoke_does(path: Path):
    """The job as `submit --smoke` loads it: its data variable may be unset."""
    return load_spec(path, env={}, warnings=[])


def test_the_recipe_is_kept_and_the_cost_shrunk() -> None:
    spec = load_spec(JOBS / "r152.yaml", ROOT)
    smoke = smoke_spec(spec, cpus=2, cuda_devices=0)
    assert smoke.model == spec.model  # depth, block, shortcut, stride placement
    assert smoke.pipeline == spec.pipeline  # scale augmentation, crop, colour, 224 input
    assert smoke.train.optimizer == spec.train.optimizer
    # The step schedule (epochs 30 and 60) keeps its kind and factor; its drops move into the
    # short run, so the smoke run goes through a rate drop too.
    assert spec.train.schedule.kind == smoke.train.schedule.kind == "step"
    assert smoke.train.schedule.gamma == spec.train.schedule.gamma
    assert spec.train.schedule.milestones == [30, 60] and smoke.train.schedule.milestones == [1]
    assert (smoke.checkpoint.metric, smoke.checkpoint.keep) == ("val_top1_error", 3)
    assert smoke.tracking.experiment == "imagenet"
    assert smoke.tracking.tags["resnetctl.smoke"] == "true"
    assert smoke.name == "r152-smoke"
    source = smoke.data.source
    assert source.kind == "synthetic" and source.image_size == (224, 224)
    # 2 CPU workers without CUDA, batch and steps cut to a few.
    assert (smoke.resources.workers, smoke.resources.use_gpu) == (2, False)
    assert smoke.resources.cpus_per_worker == 1
    assert smoke.train.global_batch(2) == 2 * BATCH and smoke.train.length == (EPOCHS, "epoch")
    train_images = source.num_classes * source.train_per_class
    assert train_images // 2 // BATCH == STEPS_PER_EPOCH
    assert smoke.checkpoint.every_n_epochs == 1 and smoke.failure.max_failures == 0


def test_workers_and_devices_follow_the_machine() -> None:
    spec = load_spec(JOBS / "r50.yaml", ROOT)
    assert smoke_spec(spec, cpus=1, cuda_devices=0).resources.workers == 1
    on_gpus = smoke_spec(spec, cpus=16, cuda_devices=4).resources
    assert (on_gpus.workers, on_gpus.use_gpu, on_gpus.gpus_per_worker) == (4, True, 1)
    # What only GPUs run is turned off on CPU: fp16 and SyncBatchNorm.
    gpu_only = load_spec(
        JOBS / "r50.yaml", [*ROOT, "train.precision=fp16", "train.sync_bn=true", "data.device=gpu"]
    )
    smoke = smoke_spec(gpu_only, cpus=2, cuda_devices=0)
    assert (smoke.train.precision, smoke.train.sync_bn, smoke.data.device) == ("fp32", False, "cpu")
    kept = load_spec(JOBS / "r50.yaml", [*ROOT, "train.precision=bf16", "train.channels_last=true"])
    smoke = smoke_spec(kept, cpus=2, cuda_devices=0)
    assert (smoke.train.precision, smoke.train.channels_last) == ("bf16", True)


def test_iteration_runs_keep_their_step_schedule_and_warmup() -> None:
    spec = load_spec(
        JOBS / "cifar-r110.yaml", [*ROOT, "train.warmup={length: 400, unit: iteration}"]
    )
    smoke = smoke_spec(spec, cpus=2, cuda_devices=0)
    total = EPOCHS * STEPS_PER_EPOCH
    assert smoke.train.length == (total, "iteration")
    schedule = smoke.train.schedule
    assert schedule.kind == "step" and schedule.unit == "iteration"
    assert len(schedule.milestones) == 2 and schedule.milestones[-1] < total
    assert smoke.train.warmup.length == 1 and smoke.train.warmup.start_factor == 0.1


def test_smaller_input_scales_the_pipeline_and_names_the_run() -> None:
    spec = load_spec(JOBS / "r18.yaml", [*ROOT, "tracking.run_name=nightly"])
    pipeline = smoke_spec(spec, cpus=2, cuda_devices=0, image_size=32).pipeline
    assert (pipeline.crop, pipeline.val_crop) == (32, 32)
    assert pipeline.scale_range == (37, 69)  # [256, 480] x 32 / 224
    assert pipeline.val_resize == 37 and pipeline.train_crop == "scale"
    smoke = smoke_spec(spec, cpus=2, cuda_devices=0, image_size=32)
    assert smoke.data.source.image_size == (32, 32)
    assert smoke.tracking.run_name == "nightly-smoke"
    cifar = smoke_spec(
        load_spec(JOBS / "cifar-r20.yaml", ROOT), cpus=2, cuda_devices=0, image_size=16
    )
    assert (cifar.pipeline.crop, cifar.pipeline.pad) == (16, 2)


def test_a_size_the_pipeline_cannot_take_is_a_spec_error() -> None:
    spec = load_spec_text(GOOD)
    with pytest.raises(SpecError) as exc:
        smoke_spec(spec, cpus=2, cuda_devices=0, image_size=4)
    assert str(exc.value).startswith("--smoke: data.pipeline")


@pytest.mark.parametrize("path", ALL_JOBS, ids=lambda p: p.stem)
def test_every_job_has_a_valid_smoke_form(path: Path) -> None:
    smoke = smoke_spec(load_as_smoke_does(path), cpus=2, cuda_devices=0)
    again = load_spec_text(smoke.model_dump_json())  # JSON is YAML: what --dry-run prints
    assert again.model_dump() == smoke.model_dump() and smoke.resources.workers == 2


@pytest.mark.parametrize("path", IMAGENET_JOBS, ids=lambda p: p.stem)
def test_every_imagenet_job_trains_an_epoch_of_its_smoke_form(path: Path) -> None:
    """One epoch (2 steps and validation) of the smoke run in one process, at 32x32: the real
    model, the DALI CPU pipeline with the job's augmentation, its optimiser and schedule.
    Checkpoints and MLflow are the end-to-end test's (tests/launch/test_smoke_e2e.py)."""
    torch.set_num_threads(1)
    smoke = smoke_spec(load_as_smoke_does(path), cpus=2, cuda_devices=0, image_size=32)
    runner = Runner(smoke, Placement())
    before = [p.detach().clone() for p in runner.model.parameters()]
    metrics = runner.run_epoch(1)
    # One process takes both workers' shards with a batch of both: the same steps per epoch.
    assert runner.step == STEPS_PER_EPOCH
    assert math.isfinite(metrics["train_loss"]) and math.isfinite(metrics["val_loss"])
    changed = [
        not torch.equal(a, b) for a, b in zip(before, runner.model.parameters(), strict=True)
    ]
    assert all(changed[:1]) and sum(changed) > len(changed) // 2
