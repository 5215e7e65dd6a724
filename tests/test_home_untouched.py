"""The suite leaves the user's `~/.ray` as it found it (absent stays absent): every Ray that a
test starts or talks to uses the suite's own token from a temporary folder. So does it leave
resnetctl's default data cache (`~/.cache/resnetctl`): every test and fixture, of any scope,
uses the suite's cache ($RESNETCTL_CACHE, tests/conftest.py). And so do the libraries resnetctl
runs: MLflow and onnxruntime keep no telemetry ids, matplotlib no font cache in the home."""

from __future__ import annotations

import pytest

from tests.conftest import cache_folder_state, library_folders_state, ray_folder_state


def home_ray_changes(at_start: dict[str, str] | None) -> list[str]:
    """What is wrong with `~/.ray` now, against its state at the session's start."""
    if ray_folder_state() == at_start:
        return []
    return [
        "~/.ray changed while the tests ran: a test started or used Ray with the user's token "
        "folder instead of $RAY_AUTH_TOKEN_PATH"
    ]


def home_cache_changes(at_start: dict[str, str] | None) -> list[str]:
    """What is wrong with resnetctl's default data cache now, against the session's start."""
    if cache_folder_state() == at_start:
        return []
    return [
        "~/.cache/resnetctl changed while the tests ran: a test or fixture used the user's data "
        "cache instead of $RESNETCTL_CACHE"
    ]


def home_library_changes(at_start: dict[str, dict[str, str] | None]) -> list[str]:
    """What is wrong with MLflow's, onnxruntime's and matplotlib's folders in the home now."""
    now = library_folders_state()
    return [
        f"{folder} changed while the tests ran: a resnetctl process let MLflow, onnxruntime or "
        "matplotlib write into the user's home (resnetctl.footprint)"
        for folder, state in now.items()
        if state != at_start.get(folder)
    ]


@pytest.mark.last
def test_the_suite_left_the_libraries_folders_in_the_home_alone(
    home_library_state_at_start: dict[str, dict[str, str] | None],
) -> None:
    changes = home_library_changes(home_library_state_at_start)
    assert not changes, changes[0]


@pytest.mark.last
def test_the_suite_left_the_users_data_cache_alone(
    home_cache_state_at_start: dict[str, str] | None,
) -> None:
    changes = home_cache_changes(home_cache_state_at_start)
    assert not changes, changes[0]


@pytest.mark.last
def test_the_suite_left_the_users_ray_folder_alone(
    home_ray_state_at_start: dict[str, str] | None,
) -> None:
    changes = home_ray_changes(home_ray_state_at_start)
    assert not changes, changes[0]
