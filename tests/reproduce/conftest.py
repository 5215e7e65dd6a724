"""Shares the analysis tests' session-wide MLflow template store."""

from tests.analysis.conftest import mlflow_template, sqlite_store  # noqa: F401
