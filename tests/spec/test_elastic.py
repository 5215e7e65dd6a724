"""Elastic worker ranges: the split of the plan's global batch at every count of the range, the
counts refused at validation, and the plan that `scale_lr` scales."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.spec import SpecError, load_spec
from resnetctl.spec.elastic import NoSplitError

SPEC = """\
name: elastic
model:
  name: cifar_resnet20
data:
  source:
    kind: synthetic
    num_classes: 4
    train_per_class: 64
    image_size: [16, 16]
  pipeline:
    kind: cifar
    crop: 16
train:
  epochs: 2
  {batch}
  base_lr: 0.1
  lr_reference_batch: 128
resources:
  workers: {workers}
  {policy}
"""


def spec_file(
    tmp_path: Path, workers: str, batch: str = "global_batch_size: 24", policy: str = ""
) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(SPEC.format(workers=workers, batch=batch, policy=policy))
    return path


def test_keep_global_batch_splits_the_plans_batch_at_every_count(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, "{min: 1, max: 4}"))
    res = spec.resources
    assert res.elastic and (res.min_workers, res.max_workers) == (1, 4)
    assert res.elastic_policy == "keep_global_batch"  # the default
    assert res.ray_num_workers == (1, 4)
    splits = {w: spec.split(w) for w in (1, 2, 3, 4)}
    # The plan at max: 24 / 4 = 6 per worker; no count may exceed 6 images per worker.
    assert [(s.per_worker_batch, s.accumulation) for s in splits.values()] == [
        (6, 4),
        (6, 2),
        (4, 2),
        (6, 1),
    ]
    for workers, split in splits.items():
        assert split.per_worker_batch * workers * split.accumulation == 24
        assert split.global_batch == 24
        assert split.peak_lr == pytest.approx(0.1 * 24 / 128)
    with pytest.raises(NoSplitError, match="outside"):
        spec.split(5)


def test_keep_global_batch_from_a_per_worker_batch_plans_at_max(tmp_path: Path) -> None:
    batch = "batch_size_per_worker: 8\n  accumulation_steps: 2"
    spec = load_spec(spec_file(tmp_path, "{min: 1, max: 2}", batch=batch))
    top, low = spec.split(), spec.split(1)
    assert (top.workers, top.global_batch, top.accumulation) == (2, 32, 2)
    assert (low.per_worker_batch, low.accumulation, low.global_batch) == (8, 4, 32)


def test_counts_without_a_whole_split_are_refused_by_name(tmp_path: Path) -> None:
    # 20 over 4 workers is 5 each; 3 workers cannot share 20 images evenly.
    path = spec_file(tmp_path, "{min: 1, max: 4}", batch="global_batch_size: 20")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert f"{path}:19: resources.workers:" in message  # the line of `workers:`
    assert "at 3 workers" in message and "global batch 20" in message


def test_several_refused_counts_are_all_named(tmp_path: Path) -> None:
    # 30 = 5 x 6: 4 workers have no split (30 % 4), neither have 7, 8 or 9 (prime to 30).
    path = spec_file(tmp_path, "{min: 3, max: 10}", batch="global_batch_size: 30")
    with pytest.raises(SpecError, match=r"at 4, 7, 8, 9 workers"):
        load_spec(path)


def test_scale_lr_keeps_the_per_worker_batch_and_scales_the_rate(tmp_path: Path) -> None:
    policy = "elastic_policy: scale_lr"
    spec = load_spec(spec_file(tmp_path, "{min: 1, max: 3}", policy=policy))
    for workers in (1, 2, 3):
        split = spec.split(workers)
        assert (split.per_worker_batch, split.accumulation) == (8, 1)
        assert split.global_batch == 8 * workers
        assert split.peak_lr == pytest.approx(0.1 * 8 * workers / 128)


def test_scale_lr_refuses_lengths_in_iterations(tmp_path: Path) -> None:
    policy = "elastic_policy: scale_lr"
    path = spec_file(tmp_path, "{min: 1, max: 2}", policy=policy)
    text = path.read_text().replace("epochs: 2", "iterations: 40\n  schedule: {kind: cosine}")
    path.write_text(text)
    with pytest.raises(SpecError, match="train.iterations in epochs"):
        load_spec(path)


@pytest.mark.parametrize(
    ("workers", "expected"),
    [
        ("{min: 2, max: 2}", "resources.workers.min 2 is not below max 2"),
        ("{min: 0, max: 2}", "resources.workers.min: Input should be greater than or equal to 1"),
        ("{min: 1}", "resources.workers.max: required field is missing"),
        ('"1-2"', "resources.workers: Input should be a valid integer"),
        ("{min: 1, max: 2, step: 1}", "unknown key 'step'"),
    ],
)
def test_malformed_ranges_name_the_field(tmp_path: Path, workers: str, expected: str) -> None:
    with pytest.raises(SpecError) as err:
        load_spec(spec_file(tmp_path, workers))
    assert expected in str(err.value)
    assert str(err.value).startswith(f"{tmp_path / 'job.yaml'}:")


def test_a_fixed_count_is_unchanged(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, "3"))
    assert not spec.resources.elastic and spec.resources.ray_num_workers == 3
    split = spec.split()
    assert (split.workers, split.per_worker_batch, split.global_batch) == (3, 8, 24)


def test_data_feasibility_is_checked_over_the_range(tmp_path: Path) -> None:
    # 4 classes x 64 = 256 train images: every count's batch fits its shard, but the validation
    # split (4 x 1) cannot give 8 workers an image each.
    policy = "elastic_policy: scale_lr"
    text = SPEC.format(workers="{min: 2, max: 8}", batch="global_batch_size: 64", policy=policy)
    text = text.replace("train_per_class: 64", "train_per_class: 64\n    val_per_class: 1")
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match="resources.workers 8 exceeds the 4 validation images"):
        load_spec(path)
