"""Shared fixtures: the shipped cluster configs, the repo's jobs, a CLI runner for the
`resnetctl cluster` sub-app, a way to write broken variants of a config, and a stub `ray`."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from resnetctl.cli.cluster import app
from resnetctl.cluster import launcher
from resnetctl.spec import JobSpec, load_spec
from tests.conftest import JOBS, ROOT

CLUSTER = ROOT / "cluster"
CONFIGS = sorted(CLUSTER.glob("*.yaml"))


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture(autouse=True)
def _data_roots(monkeypatch: pytest.MonkeyPatch) -> None:
    # The paper's jobs name their data through these; placement never reads the data.
    monkeypatch.setenv("RESNETCTL_IMAGENET", "/data/imagenet")
    monkeypatch.setenv("RESNETCTL_CIFAR10", "/data/cifar10")


@pytest.fixture
def job() -> Callable[[str], JobSpec]:
    """Load `jobs/NAME.yaml`."""
    return lambda name: load_spec(JOBS / f"{name}.yaml")


@pytest.fixture
def cli() -> Callable[..., Outcome]:
    runner = CliRunner()

    def invoke(*args: str) -> Outcome:
        result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def variant(tmp_path: Path) -> Callable[..., Path]:
    """Write a copy of `cluster/NAME.yaml` changed by `edit(config)` and return its path."""

    def make(name: str, edit: Callable[[dict[str, Any]], None]) -> Path:
        config = yaml.safe_load((CLUSTER / f"{name}.yaml").read_text())
        edit(config)
        path = tmp_path / f"{name}-variant.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return make


def stub(tmp_path: Path, name: str, body: str) -> Path:
    """An executable that records its argv as JSON in `<name>.argv`, then runs `body`."""
    path = tmp_path / name
    record = tmp_path / f"{name}.argv"
    path.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"with open({str(record)!r}, 'a') as f: f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        f"{body}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def calls(tmp_path: Path, name: str) -> list[list[str]]:
    """The argv of every run of the stub `name`, in order."""
    record = tmp_path / f"{name}.argv"
    return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []


@pytest.fixture
def fake_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Make the launcher run a stub `ray` (recording its argv) that runs `body`."""

    def make(body: str = "sys.exit(0)") -> Path:
        path = stub(tmp_path, "ray", body)
        monkeypatch.setattr(launcher, "ray_executable", lambda: str(path))
        return path

    return make
