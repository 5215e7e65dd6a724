"""The suite leaves the user's `~/.ray` as it found it (absent stays absent): every Ray that a
test starts or talks to uses the suite's own token from a temporary folder. So does it leave
resnetctl's default data cache (`~/.cache/resnetctl`): every test and fixture, of any scope,
uses the suite's cache ($RESNETCTL_CACHE, tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import cache_folder_state, ray_folder_state


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
