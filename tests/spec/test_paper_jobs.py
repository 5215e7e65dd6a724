"""The ImageNet job files reproduce the paper's tables with a schedule that does not depend on
validation noise (lr 0.1 divided by 10 at epochs 30 and 60, the reference training's drops) and
end with the tables' 10-crop evaluation; the CIFAR and digits jobs (single-crop tables) do not."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.spec.errors import SpecError
from resnetctl.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]
IMAGENET_JOBS = sorted([*ROOT.glob("jobs/r[0-9]*.yaml"), *ROOT.glob("jobs/plain[0-9]*.yaml")])
OTHER_JOBS = sorted(set(ROOT.glob("jobs/*.yaml")) - set(IMAGENET_JOBS))


@pytest.fixture(autouse=True)
def _data_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNETCTL_IMAGENET", str(tmp_path))
    monkeypatch.setenv("RESNETCTL_CIFAR10", str(tmp_path))


def test_every_imagenet_job_is_found() -> None:
    assert len(IMAGENET_JOBS) == 7
    assert len(OTHER_JOBS) == 13  # 12 CIFAR and the digits quickstart


@pytest.mark.parametrize("path", IMAGENET_JOBS, ids=lambda p: p.name)
def test_imagenet_jobs_divide_at_epochs_30_and_60(path: Path) -> None:
    spec = load_spec(path)
    schedule = spec.train.schedule
    assert spec.pipeline.kind == "imagenet"
    assert (schedule.kind, schedule.milestones, schedule.unit) == ("step", [30, 60], "epoch")
    assert schedule.gamma == pytest.approx(0.1)


@pytest.mark.parametrize("path", IMAGENET_JOBS, ids=lambda p: p.name)
def test_imagenet_jobs_end_with_a_ten_crop_evaluation_of_the_best_checkpoint(path: Path) -> None:
    final = load_spec(path).train.final_eval
    assert final is not None and (final.protocol, final.weights) == ("ten_crop", "best")


@pytest.mark.parametrize("path", OTHER_JOBS, ids=lambda p: p.name)
def test_cifar_and_digits_jobs_have_no_final_evaluation(path: Path) -> None:
    spec = load_spec(path)
    assert spec.pipeline.kind == "cifar"
    assert spec.train.final_eval is None


def test_a_ten_crop_final_eval_on_a_cifar_job_is_a_clear_error() -> None:
    cifar = ROOT / "jobs" / "cifar-r20.yaml"
    with pytest.raises(SpecError, match="final_eval protocol ten_crop needs the imagenet pipeline"):
        load_spec(cifar, ["train.final_eval={protocol: ten_crop}"])


def test_the_field_reference_says_which_schedule_and_protocol_reproduce_the_tables() -> None:
    text = (ROOT / "docs" / "job-spec.md").read_text()
    section = text.split("## Reproducing the paper's numbers", 1)[1].split("\n## ", 1)[0]
    assert "divided by 10 at epochs 30 and 60" in section
    assert "val_top1_error_10crop" in section and "10-crop" in section
    assert "32k and 48k" in section
