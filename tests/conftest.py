"""Shared fixtures: an isolated cache, tracking store and run storage for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOBS = ROOT / "jobs"


@pytest.fixture(autouse=True)
def _isolated(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never write into the user's cache, MLflow store or run storage.
    cache = tmp_path_factory.getbasetemp() / "cache"  # shared: generated data sets are reused
    monkeypatch.setenv("RESNETCTL_CACHE", str(cache))
    monkeypatch.setenv("RESNETCTL_STORAGE", str(tmp_path_factory.mktemp("runs")))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
