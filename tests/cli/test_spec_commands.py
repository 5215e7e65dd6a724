"""`resnetctl validate` and `resnetctl schema`: exit codes and messages."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from resnetctl.spec.schema import json_schema, markdown_reference
from tests.conftest import JOBS

GOOD = """\
name: tiny
model: {name: cifar_resnet20}
data: {source: {kind: synthetic, num_classes: 4, image_size: [16, 16]},
       pipeline: {kind: cifar, crop: 16}}
train: {epochs: 1, batch_size_per_worker: 4}
"""


def test_validate_all_jobs(cli, monkeypatch) -> None:
    monkeypatch.setenv("RESNETCTL_IMAGENET", "/data/imagenet")
    monkeypatch.setenv("RESNETCTL_CIFAR10", "/data/cifar10")
    files = sorted(str(p) for p in JOBS.glob("*.yaml"))
    outcome = cli("validate", *files, "--json")
    assert outcome.code == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert [r["file"] for r in report] == files and all(r["valid"] for r in report)


def test_validate_reports_each_bad_file_and_exits_2(cli, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("epochs: 1", "epoch: 1"))
    outcome = cli("validate", str(good), str(bad), str(tmp_path / "missing.yaml"))
    assert outcome.code == 2
    assert f"ok {good}" in outcome.stdout
    assert f"{bad}:5: train.epoch: unknown key 'epoch'; did you mean 'epochs'?" in outcome.stderr
    assert f"{tmp_path / 'missing.yaml'}: no such file" in outcome.stderr


def test_imagenet_job_without_data_variable_names_it(cli, monkeypatch) -> None:
    monkeypatch.delenv("RESNETCTL_IMAGENET", raising=False)
    outcome = cli("validate", str(JOBS / "r50.yaml"))
    assert outcome.code == 2
    assert (
        "r50.yaml:17: data.source.root: environment variable RESNETCTL_IMAGENET is not set"
        in outcome.stderr
    )
    assert "--set data.source.root=VALUE" in outcome.stderr


def test_schema_command_prints_generated_schema(cli, tmp_path: Path) -> None:
    outcome = cli("schema")
    assert outcome.code == 0 and json.loads(outcome.stdout) == json_schema()
    target = tmp_path / "ref.md"
    assert cli("schema", "--markdown", "-o", str(target)).code == 0
    assert target.read_text() == markdown_reference()


def test_python_dash_m_and_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "resnetctl", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.startswith("resnetctl ")


def test_unknown_command_is_usage_error(cli) -> None:
    assert cli("frobnicate").code == 2
