"""The suite leaves the user's `~/.ray` as it found it (absent stays absent): every Ray that a
test starts or talks to uses the suite's own token from a temporary folder."""

from __future__ import annotations

import pytest

from tests.conftest import ray_folder_state


def home_ray_changes(at_start: dict[str, str] | None) -> list[str]:
    """What is wrong with `~/.ray` now, against its state at the session's start."""
    if ray_folder_state() == at_start:
        return []
    return [
        "~/.ray changed while the tests ran: a test started or used Ray with the user's token "
        "folder instead of $RAY_AUTH_TOKEN_PATH"
    ]


@pytest.mark.last
def test_the_suite_left_the_users_ray_folder_alone(
    home_ray_state_at_start: dict[str, str] | None,
) -> None:
    changes = home_ray_changes(home_ray_state_at_start)
    assert not changes, changes[0]
