"""The recipe fields of issue 17 (accumulation, clipping, EMA, mixup, policy augmentation,
compile, step metrics): their arithmetic, and their errors named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.spec import SpecError, load_spec
from tests.spec.test_loader import GOOD, issues, write


def test_accumulation_multiplies_the_global_batch(tmp_path: Path) -> None:
    text = GOOD.replace("global_batch_size: 8", "batch_size_per_worker: 4\n  accumulation_steps: 3")
    spec = load_spec(write(tmp_path, text))
    assert spec.train.global_batch(2) == 24 and spec.train.per_worker_batch(2) == 4
    assert spec.train.scaled_lr(2) == pytest.approx(0.1 * 24 / 128)


def test_global_batch_must_split_into_workers_and_micro_batches(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace("global_batch_size: 8", "global_batch_size: 8\n  accumulation_steps: 3"),
    )
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:")
    assert "not divisible by resources.workers x train.accumulation_steps (6)" in message


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("  accumulation_steps: 0", "train.accumulation_steps"),
        ("  grad_clip_norm: 0", "train.grad_clip_norm"),
        ("  ema: {decay: 1.0}", "train.ema.decay"),
        ("  ema: {every_n_steps: 0}", "train.ema.every_n_steps"),
        ("  mix: {prob: 1.5}", "train.mix.prob"),
        ("  mix: {mixup_alpha: 0, cutmix_alpha: 0}", "train.mix"),
    ],
)
def test_bad_values_name_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = write(tmp_path, GOOD.replace("  epochs: 2", f"  epochs: 2\n{line}"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:14: {field}:")


def test_ranking_by_an_ema_metric_needs_the_ema(tmp_path: Path) -> None:
    text = GOOD + "checkpoint:\n  metric: val_top1_error_ema_pct\n"
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:") and "needs train.ema" in message
    spec = load_spec(
        write(tmp_path, text.replace("  epochs: 2", "  epochs: 2\n  ema: {}"), "ok.yaml")
    )
    assert spec.checkpoint.mode == "min" and spec.train.ema is not None


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("    auto_augment: randaug", "data.pipeline.auto_augment"),
        ("    random_erasing: 2", "data.pipeline.random_erasing"),
    ],
)
def test_bad_policy_fields_name_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = write(tmp_path, GOOD.replace("    crop: 16", f"    crop: 16\n{line}"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:12: {field}: "), message
