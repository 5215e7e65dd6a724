"""A tracking store per test without paying for MLflow's schema migration each time: the
tables are created once per session and the database file is copied."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow sqlite database."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


def copy_store(template: Path, folder: Path) -> str:
    """A fresh store in `folder` (a copy of the template); its URI."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "mlflow.db"
    shutil.copyfile(template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def sqlite_store(mlflow_template: Path, tmp_path: Path) -> str:
    """A small MLflow sqlite store in `tmp_path`."""
    return copy_store(mlflow_template, tmp_path)
