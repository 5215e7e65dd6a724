"""Specs that validate field by field but cannot run: each is refused with file:line: field."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.cluster.config import ClusterConfigError
from resnetctl.cluster.parse import read_yaml
from resnetctl.spec import SpecError, load_spec
from resnetctl.spec.loader import load_spec_text
from tests.spec.test_loader import GOOD, issues, write


def refused(text: str, *overrides: str) -> list[str]:
    with pytest.raises(SpecError) as exc:
        load_spec_text(text, "job.yaml", overrides)
    return issues(exc)


def test_key_given_twice_names_both_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path, GOOD.replace("  epochs: 2\n", "  epochs: 2\n  base_lr: 0.1\n  epochs: 3\n")
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:15: train.epochs: key 'epochs' is given twice")
    assert f"first at {path}:13" in message


def test_section_given_twice_and_yaml_merge_keys_are_not_duplicates() -> None:
    (message,) = refused(GOOD + "train: {epochs: 1, global_batch_size: 8}\n")
    assert message.startswith(
        "job.yaml:17: train: key 'train' is given twice, first at job.yaml:12"
    )
    merged = "base: &b {epochs: 2, global_batch_size: 8}\n"
    # An anchor and `<<` merges are how YAML shares values; they are not duplicates (the
    # unknown `base` section is then the only complaint).
    text = merged + GOOD.replace("train:\n  epochs: 2\n  global_batch_size: 8", "train:\n  <<: *b")
    (message,) = refused(text)
    assert "unknown key 'base'" in message


def test_cluster_config_reader_refuses_a_key_given_twice(tmp_path: Path) -> None:
    path = write(tmp_path, "cluster_name: a\nmax_workers: 2\ncluster_name: b\n", "cluster.yaml")
    with pytest.raises(ClusterConfigError) as exc:
        read_yaml(path)
    (issue,) = exc.value.issues
    assert str(issue).startswith(f"{path}:3: cluster_name: given twice, first at line 1")


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("synthetc", "unknown kind 'synthetc'; did you mean 'synthetic'?"),
        ("bogus", "unknown kind 'bogus' (expected one of: imagefolder, digits, synthetic, shards)"),
    ],
)
def test_unknown_source_kind_suggests(kind: str, expected: str) -> None:
    (message,) = refused(GOOD.replace("kind: synthetic", f"kind: {kind}"))
    assert message.startswith(f"job.yaml:6: data.source.kind: {expected}")
    assert "Input tag" not in message


def test_unknown_kind_from_an_override_and_a_missing_kind() -> None:
    (message,) = refused(GOOD, "train.schedule.kind=cosin")
    assert message.startswith("--set train.schedule.kind=cosin: train.schedule.kind: unknown kind")
    assert "did you mean 'cosine'?" in message
    (message,) = refused(GOOD.replace("    kind: cifar\n", ""))
    assert message.startswith("job.yaml:9: data.pipeline.kind: required field is missing")
    assert "imagenet, cifar" in message


def test_cifar_crop_larger_than_the_padded_image() -> None:
    # 16x16 images padded by 4 on each side give 24 pixels: a 28 crop does not fit.
    (message,) = refused(GOOD, "data.pipeline.crop=28", "data.pipeline.pad=4")
    assert message.startswith("--set data.pipeline.crop=28: data.pipeline.crop:")
    assert "larger than the padded image (16x16 + 2 x pad 4 = 24)" in message
    assert load_spec_text(GOOD, overrides=["data.pipeline.crop=24", "data.pipeline.pad=4"])
    digits = GOOD.replace(
        "    kind: synthetic\n    num_classes: 4\n    image_size: [16, 16]",
        "    kind: digits\n    image_size: 12",
    )
    (message,) = refused(digits, "data.pipeline.pad=0")
    assert (
        message.startswith("job.yaml:10: data.pipeline.crop:")
        and "12x12 + 2 x pad 0 = 12" in message
    )


def test_batch_larger_than_a_workers_shard_of_a_generated_set() -> None:
    # 4 classes x 32 training images = 128; two workers hold 64 each.
    (message,) = refused(GOOD, "train.global_batch_size=130")
    assert message.startswith("--set train.global_batch_size=130: train.global_batch_size:")
    assert "batch of 65 per worker, larger than a worker's shard" in message
    assert load_spec_text(GOOD, overrides=["train.global_batch_size=128"])


def test_fewer_validation_images_than_workers() -> None:
    (message,) = refused(GOOD, "data.source.val_per_class=1", "resources.workers=8")
    assert "resources.workers 8 exceeds the 4 validation images" in message


def test_fewer_model_outputs_than_classes() -> None:
    (message,) = refused(GOOD, "model.num_classes=3")
    assert message.startswith("--set model.num_classes=3: model.num_classes:")
    assert "fewer than the 4 classes" in message


def test_milestones_and_warmup_in_iterations_beyond_an_epoch_run() -> None:
    # 128 images, batch 8 over 2 workers: 16 steps per epoch, 32 in the 2-epoch run.
    step = "train.schedule={kind: step, milestones: [10, 40], unit: iteration}"
    (message,) = refused(GOOD, step)
    assert "train.schedule.milestones [40] (iterations) lie outside the run of 32 iterations" in (
        message
    )
    (message,) = refused(GOOD, "train.warmup={length: 32, unit: iteration}")
    assert "train.warmup.length 32 iterations is not shorter than the run of 32" in message
    assert load_spec_text(GOOD, overrides=["train.warmup={length: 31, unit: iteration}"])


def test_accumulated_micro_batches_make_one_step_when_checking_the_schedule() -> None:
    # 128 images, batch 8 over 2 workers in micro-batches of 2: 32 micro-batches per shard,
    # 16 optimiser steps per epoch as without accumulation, 32 in the 2-epoch run. Counting
    # micro-batches as steps (64 in the run) put iteration 40 inside it.
    accumulate = "train.accumulation_steps=2"
    step = "train.schedule={kind: step, milestones: [10, 40], unit: iteration}"
    (message,) = refused(GOOD, accumulate, step)
    assert "milestones [40] (iterations) lie outside the run of 32 iterations" in message
    assert load_spec_text(
        GOOD, overrides=[accumulate, "train.warmup={length: 31, unit: iteration}"]
    )


def test_fractional_gpus_for_several_nccl_workers() -> None:
    (message,) = refused(GOOD, "resources.use_gpu=true", "resources.gpus_per_worker=0.5")
    assert "resources.gpus_per_worker 0.5 puts several of the 2 workers on one GPU" in message


def test_one_image_per_worker_on_one_by_one_maps() -> None:
    imagenet = GOOD.replace("cifar_resnet20", "resnet18").replace(
        "kind: cifar\n    crop: 16",
        "kind: imagenet\n    crop: 32\n    scale_range: [32, 40]\n    val_resize: 32\n"
        "    val_crop: 32",
    )
    (message,) = refused(imagenet, "train.global_batch_size=2")
    assert message.startswith("--set train.global_batch_size=2: train.global_batch_size:")
    assert "1 image per worker, and data.pipeline.crop 32 leaves 1x1 maps" in message
    assert load_spec_text(imagenet, overrides=["train.global_batch_size=4"])  # 2 per worker
    assert load_spec_text(
        imagenet.replace("crop: 32\n", "crop: 33\n").replace("[32, 40]", "[33, 40]"),
        overrides=["train.global_batch_size=2", "data.pipeline.val_resize=33"],
    )
