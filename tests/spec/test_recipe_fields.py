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
    ],
)
def test_bad_values_name_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    path = write(tmp_path, GOOD.replace("  epochs: 2", f"  epochs: 2\n{line}"))
    with pytest.raises(SpecError) as exc:
        load_spec(path)
    (message,) = issues(exc)
    assert message.startswith(f"{path}:14: {field}:")
