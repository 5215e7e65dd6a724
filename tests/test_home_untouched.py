"""The suite leaves the user's `~/.ray` as it found it (absent stays absent): every Ray that a
test starts or talks to uses the suite's own token from a temporary folder."""

from __future__ import annotations

import pytest

from tests.conftest import ray_folder_state


@pytest.mark.last
def test_the_suite_left_the_users_ray_folder_alone(
    home_ray_state_at_start: dict[str, str] | None,
) -> None:
    assert ray_folder_state() == home_ray_state_at_start, (
        "~/.ray changed while the tests ran: a test started or used Ray with the user's token "
        "folder instead of $RAY_AUTH_TOKEN_PATH"
    )
