"""Provenance of a run submitted to a cluster: the submitter's, carried by the job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from resnetctl.spec import load_spec
from resnetctl.tracking.labels import provenance_tags, submitter_env
from tests.conftest import JOBS


def test_a_cluster_job_shows_the_submitters_spec_file_commit_and_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(JOBS / "quickstart.yaml")
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    carried = submitter_env(str(JOBS / "quickstart.yaml"))  # on the submitting machine
    assert carried["RESNETCTL_SOURCE_NAME"] == str(JOBS / "quickstart.yaml")
    assert carried["RESNETCTL_USER"] == "alice" and len(carried["RESNETCTL_SOURCE_COMMIT"]) == 40
    # On the head node: another user, the job's own copy of the spec, in a folder already gone.
    monkeypatch.setattr("getpass.getuser", lambda: "ray")
    gone = tmp_path / "job"
    gone.mkdir()
    monkeypatch.chdir(gone)
    os.rmdir(gone)
    tags = provenance_tags(spec, "job.yaml", environ=carried)
    assert tags["mlflow.source.name"] == str(JOBS / "quickstart.yaml")
    assert tags["mlflow.source.git.commit"] == carried["RESNETCTL_SOURCE_COMMIT"]
    assert tags["mlflow.user"] == "alice" and tags["mlflow.note.content"] == spec.description
    # Without the job's variables, and no working directory, the spec file is all there is.
    assert provenance_tags(spec, "job.yaml", environ={})["mlflow.source.name"] == "job.yaml"
