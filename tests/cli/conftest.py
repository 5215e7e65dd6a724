"""Run the CLI in-process and capture stdout and stderr apart."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from resnetctl.cli.app import app
from tests.analysis.conftest import mlflow_template  # noqa: F401  (a fixture, shared)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str) -> Outcome:
        result = runner.invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "200"})
        return Outcome(result.exit_code, result.stdout, result.stderr)

    return invoke
