"""`resnetctl submit jobs/r18.yaml --smoke`: the ImageNet recipe, as it would go to a GPU
cluster, run end to end on this machine's embedded Ray without its data set."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import JOBS
from tests.launch.conftest import metric_history, mlflow_runs, summary

pytestmark = pytest.mark.slow


def test_r18_smoke_runs_end_to_end_without_imagenet(submit, workdir: Path, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)  # the smoke run needs no data set
    job = submit(str(JOBS / "r18.yaml"), "--smoke", "--smoke-size", "32", "--json")
    code, out, err = job.wait(timeout=300)
    assert code == 0, err[-3000:]
    result = summary(out)
    assert result["succeeded"] and result["epochs_completed"] == 2
    assert "smoke run r18-smoke: 2 x cpu workers, synthetic 32x32 images" in err
    (run,) = mlflow_runs(workdir, "imagenet")
    assert run.info.run_id == result["mlflow_run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["resnetctl.job"] == "r18-smoke"
    assert run.data.tags["resnetctl.smoke"] == "true"
    assert run.data.params["model.name"] == "resnet18"
    assert [s for s, _ in metric_history(workdir, run.info.run_id, "train_loss")] == [1, 2]
    best = Path(result["best_checkpoint"])
    assert (best / "state.pt").is_file() and (best / "meta.json").is_file()
