"""The ImageNet job files reproduce the paper's tables with a schedule that does not depend on
validation noise: lr 0.1 divided by 10 at epochs 30 and 60 (the reference training's drops)."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnetctl.spec.loader import load_spec

ROOT = Path(__file__).resolve().parents[2]
IMAGENET_JOBS = sorted([*ROOT.glob("jobs/r[0-9]*.yaml"), *ROOT.glob("jobs/plain[0-9]*.yaml")])


@pytest.fixture(autouse=True)
def _imagenet_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RESNETCTL_IMAGENET", str(tmp_path))


def test_every_imagenet_job_is_found() -> None:
    assert len(IMAGENET_JOBS) == 7


@pytest.mark.parametrize("path", IMAGENET_JOBS, ids=lambda p: p.name)
def test_imagenet_jobs_divide_at_epochs_30_and_60(path: Path) -> None:
    spec = load_spec(path)
    schedule = spec.train.schedule
    assert spec.pipeline.kind == "imagenet"
    assert (schedule.kind, schedule.milestones, schedule.unit) == ("step", [30, 60], "epoch")
    assert schedule.gamma == pytest.approx(0.1)
