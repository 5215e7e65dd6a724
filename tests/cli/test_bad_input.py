"""Bad input ends in one line naming the file, field or value at fault and exit code 2, never
a traceback; and `submit --dry-run` refuses what the real `submit` refuses before it starts Ray
(the resume target, the storage location, the data, the tracking store)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import JOBS

QUICKSTART = str(JOBS / "quickstart.yaml")


@pytest.fixture
def binary(tmp_path: Path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_bytes(bytes(range(256)) * 8)  # not UTF-8 from the first byte on
    return path


@pytest.mark.parametrize(
    "before, after",
    [
        (["validate"], []),
        (["submit"], ["--dry-run"]),
        (["submit"], ["--smoke"]),
        (["tune"], []),
        (["cluster", "validate"], []),
    ],
    ids=lambda words: " ".join(words),
)
def test_a_binary_file_is_named_not_decoded(
    cli, binary: Path, before: list[str], after: list[str]
) -> None:
    outcome = cli(*before, str(binary), *after)
    assert outcome.code == 2
    assert f"{binary}" in outcome.stderr and "is not a YAML text file" in outcome.stderr
    assert "Traceback" not in outcome.stderr + outcome.stdout


def test_an_unwritable_schema_output_is_one_line(cli, tmp_path: Path) -> None:
    target = tmp_path / "missing" / "schema.json"
    outcome = cli("schema", "-o", str(target))
    assert outcome.code == 2 and outcome.stderr.strip() == (
        f"error: --output {target}: No such file or directory"
    )


def test_ui_refuses_a_store_mlflow_cannot_serve(cli) -> None:
    outcome = cli("ui", "--uri", "ftp://host/store")
    assert outcome.code == 2 and "--uri: unsupported scheme 'ftp'" in outcome.stderr


def test_dry_run_refuses_a_resume_target_that_does_not_exist(cli) -> None:
    outcome = cli("submit", QUICKSTART, "--dry-run", "--resume", "no-such-run")
    assert outcome.code == 2
    storage = os.environ["RESNETCTL_STORAGE"]
    assert f"no run or checkpoint named 'no-such-run' under {storage}" in outcome.stderr
    assert outcome.stdout == ""  # no plan printed for a job that would not start


def test_dry_run_refuses_a_storage_location_pyarrow_cannot_open(cli) -> None:
    outcome = cli("submit", QUICKSTART, "--dry-run", "--storage", "ftp://x/y")
    assert outcome.code == 2 and "storage: ftp://x" in outcome.stderr
    assert "not a storage location pyarrow can open" in outcome.stderr


def test_dry_run_refuses_a_tracking_store_it_cannot_write(cli, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'no-such-folder' / 'mlflow.db'}"
    outcome = cli("submit", QUICKSTART, "--dry-run", "--set", f"tracking.uri={uri}")
    assert outcome.code == 2 and "folder" in outcome.stderr and "missing" in outcome.stderr


def test_dry_run_for_a_cluster_checks_what_this_machine_can_and_plans_without_data(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)  # ImageNet is the cluster's
    address = ["--address", "http://127.0.0.1:9"]  # nothing there: a dry run contacts nothing
    r50 = str(JOBS / "r50.yaml")
    local_store = cli("submit", r50, "--dry-run", *address)
    assert local_store.code == 2
    assert "is a local store that the cluster's workers cannot reach" in local_store.stderr
    server = ["--set", "tracking.uri=http://127.0.0.1:5000"]
    bad_storage = cli("submit", r50, "--dry-run", *address, *server, "--storage", "ftp://x/y")
    assert bad_storage.code == 2 and "--storage: ftp://x/y: not a storage location" in (
        bad_storage.stderr
    )
    planned = cli("submit", r50, "--dry-run", "--json", *address, *server)
    assert planned.code == 0, planned.stderr
    assert "${RESNETCTL_IMAGENET} is not set" in planned.stderr  # a warning: the cluster sets it
    plan = json.loads(planned.stdout)["plan"]
    assert plan["workers"] == 8 and plan["device"] == "gpu" and plan["global_batch"] == 256
    assert plan["train_images"] is None and plan["training_flops"] is None
