"""Shared fixtures: the shipped cluster configs, the repo's jobs, a CLI runner for the
`resnetctl cluster` sub-app, and a way to write broken variants of a config."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from resnetctl.cli.cluster import app
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
