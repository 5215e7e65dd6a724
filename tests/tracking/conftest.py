"""Fixtures shared by the tracking tests."""

from tests.analysis.conftest import mlflow_template  # noqa: F401  (a fixture, shared)
