"""Finding a run to resume under the storage path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from resnetctl.storage import CHECKPOINT_META, CHECKPOINT_STATE, RunRecord, resolve_resume


def make_run(storage: Path, name: str, job: str, epochs: int) -> None:
    RunRecord(name, job, "sqlite:///x.db", f"id-{name}").save(storage)
    for epoch in range(1, epochs + 1):
        folder = storage / name / "ray" / f"checkpoint_{epoch}"
        folder.mkdir(parents=True)
        (folder / CHECKPOINT_META).write_text(json.dumps({"epoch": epoch}))
        (folder / CHECKPOINT_STATE).write_bytes(b"")  # a checkpoint from before manifests


def test_latest_resumes_the_newest_run_of_the_same_job(tmp_path: Path) -> None:
    make_run(tmp_path, "quickstart-20261201-100000", "quickstart", 3)
    make_run(tmp_path, "quickstart-20261202-090000", "quickstart", 2)
    make_run(tmp_path, "tiny-20261203-000000", "tiny", 1)  # newer, but another job
    checkpoint, record = resolve_resume("latest", tmp_path, job="quickstart")
    assert record is not None and record.run_name == "quickstart-20261202-090000"
    assert checkpoint.name == "checkpoint_2"  # that run's last epoch


def test_latest_without_a_run_of_the_job_names_the_job(tmp_path: Path) -> None:
    make_run(tmp_path, "tiny-20261203-000000", "tiny", 1)
    with pytest.raises(FileNotFoundError, match="no run of job 'quickstart'"):
        resolve_resume("latest", tmp_path, job="quickstart")


def test_an_unknown_run_name_lists_the_known_ones(tmp_path: Path) -> None:
    make_run(tmp_path, "tiny-20261203-000000", "tiny", 1)
    with pytest.raises(FileNotFoundError, match="known runs: tiny-20261203-000000"):
        resolve_resume("quickstart-20261122-075751", tmp_path, job="quickstart")
