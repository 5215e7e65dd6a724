"""`resnetctl submit --smoke` on the command line: what it refuses, and its plan (the run
itself is tests/launch/test_smoke_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import JOBS


def test_smoke_plan_needs_no_data_variable(cli, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    monkeypatch.setattr("resnetctl.host.usable_cpus", lambda: 2)
    outcome = cli("submit", str(JOBS / "r152.yaml"), "--smoke", "--dry-run", "--json")
    assert outcome.code == 0, outcome.stderr
    result = json.loads(outcome.stdout)
    spec, plan = result["spec"], result["plan"]
    assert spec["name"] == "r152-smoke" and spec["model"]["name"] == "resnet152"
    assert spec["data"]["source"]["image_size"] == [224, 224]
    assert (plan["workers"], plan["device"], plan["steps_per_epoch"], plan["epochs"]) == (
        2,
        "cpu",
        2,
        2,
    )
    assert "smoke run r152-smoke: 2 x cpu workers, synthetic 224x224 images" in outcome.stderr


def test_smoke_still_needs_variables_outside_the_data_source(cli, tmp_path: Path, monkeypatch):
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    monkeypatch.delenv("NO_SUCH_TRACKING_URI", raising=False)
    job = tmp_path / "job.yaml"
    job.write_text(
        (JOBS / "r18.yaml").read_text()
        + "  uri: ${NO_SUCH_TRACKING_URI}\n"  # under `tracking:`, the file's last section
    )
    outcome = cli("submit", str(job), "--smoke", "--dry-run")
    assert outcome.code == 2
    assert "tracking.uri: ${NO_SUCH_TRACKING_URI} is not set" in outcome.stderr
    assert "RESNETCTL_IMAGENET" not in outcome.stderr


def test_smoke_options_that_contradict_it(cli) -> None:
    job = str(JOBS / "quickstart.yaml")
    remote = cli("submit", job, "--smoke", "--address", "http://127.0.0.1:8265")
    assert remote.code == 2 and "--smoke is a fresh run on this machine" in remote.stderr
    resumed = cli("submit", job, "--smoke", "--resume", "quickstart-1")
    assert resumed.code == 2 and "drop --address, --cluster and --resume" in resumed.stderr
    alone = cli("submit", job, "--smoke-size", "16", "--dry-run")
    assert alone.code == 2 and "use it with --smoke" in alone.stderr
    tiny = cli("submit", job, "--smoke", "--smoke-size", "4", "--dry-run")
    assert tiny.code == 2  # below the option's minimum of 8 pixels
