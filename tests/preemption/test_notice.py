"""A notice's deadline arithmetic, and the `ray drain-node` command built from it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from resnetctl.preemption.notice import Notice, parse_utc, utc
from resnetctl.preemption.ray_node import REASON, DrainRequest

NODE = "0f" * 28


def test_utc_times_as_the_clouds_write_them() -> None:
    expected = datetime(2026, 12, 6, 8, 22, tzinfo=timezone.utc).timestamp()
    assert parse_utc("2026-12-06T08:22:00Z") == expected
    assert parse_utc("2026-12-06T08:22:00+00:00") == expected
    assert parse_utc("2026-12-06T08:22:00") == expected  # no zone: UTC, not local time
    assert parse_utc("2026-12-06T09:22:00+01:00") == expected
    assert parse_utc("2026-12-06T08:22:00.500Z") == expected + 0.5
    with pytest.raises(ValueError):
        parse_utc("in two minutes")
    assert utc(expected + 0.25) == "2026-12-06T08:22:00.250Z"


def test_remaining_seconds_round_down_so_ray_is_never_told_later() -> None:
    notice = Notice("aws spot/instance-action", "terminate", deadline=1000.0)
    assert notice.remaining_seconds(now=880.0) == 120
    assert notice.remaining_seconds(now=880.1) == 119  # not 120: that would be 0.1 s late
    assert notice.remaining_seconds(now=999.99) == 0
    assert notice.remaining_seconds(now=1005.0) == 0  # late notices drain at once
    assert Notice("aws rebalance", "risk", deadline=None).remaining_seconds(0.0) is None


def test_the_drain_command_is_ray_drain_node_for_this_node() -> None:
    request = DrainRequest("10.0.0.7:6379", NODE, "gcp instance/preempted: TRUE", 29)
    assert request.argv() == [
        "ray",
        "drain-node",
        "--address",
        "10.0.0.7:6379",
        "--node-id",
        NODE,
        "--reason",
        "DRAIN_NODE_REASON_PREEMPTION",
        "--reason-message",
        "gcp instance/preempted: TRUE",
        "--deadline-remaining-seconds",
        "29",
    ]
    assert request.command_line().endswith(
        "--reason-message 'gcp instance/preempted: TRUE' --deadline-remaining-seconds 29"
    )
    # Ray's deadline as `ray drain-node` computes it: now in ms plus the whole seconds.
    assert request.deadline_ms(now=1000.25) == 1000250 + 29000
    advisory = DrainRequest("10.0.0.7:6379", NODE, "rebalance", None)
    assert "--deadline-remaining-seconds" not in advisory.argv()
    assert advisory.deadline_ms(now=1000.0) == 0  # Ray's "no deadline"


def test_rays_own_drain_node_command_accepts_the_command_built() -> None:
    from ray.scripts.scripts import drain_node

    request = DrainRequest("10.0.0.7:6379", NODE, "aws: terminate at 08:22:00Z", 118)
    context = drain_node.make_context("drain-node", request.argv()[2:])
    assert context.params == {
        "address": "10.0.0.7:6379",
        "node_id": NODE,
        "reason": REASON,
        "reason_message": "aws: terminate at 08:22:00Z",
        "deadline_remaining_seconds": 118,
    }
