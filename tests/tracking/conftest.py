"""Fixtures shared by the tracking tests."""

from tests.analysis.conftest import mlflow_template, sqlite_store  # noqa: F401  (fixtures, shared)
