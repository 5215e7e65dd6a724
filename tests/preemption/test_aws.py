"""The AWS provider against a fake IMDSv2 that answers as EC2 documents it."""

from __future__ import annotations

import time

import pytest

from resnetctl.preemption.aws import AwsSpotNotices
from resnetctl.preemption.base import Settings
from resnetctl.preemption.metadata import MetadataError
from tests.preemption.metadata_servers import ACTION_PATH, REBALANCE_PATH, TOKEN_PATH, FakeImds


def aws(imds: FakeImds) -> AwsSpotNotices:
    return AwsSpotNotices(Settings(metadata_url=imds.url))


def test_nothing_before_the_notice_and_every_read_carries_a_session_token(imds) -> None:
    provider = aws(imds)
    assert provider.next_notice(0) is None
    assert provider.next_notice(0) is None
    (put,) = imds.requests(TOKEN_PATH)  # one session for both reads
    assert put.method == "PUT" and put.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "21600"
    gets = imds.requests(ACTION_PATH) + imds.requests(REBALANCE_PATH)
    assert len(gets) == 4
    assert {g.headers["x-aws-ec2-metadata-token"] for g in gets} == {next(iter(imds.tokens))}


def test_a_read_without_a_token_is_refused_by_the_fake_as_by_ec2(imds) -> None:
    from resnetctl.preemption.metadata import request

    assert request("GET", imds.url + ACTION_PATH).status == 401
    assert request("PUT", imds.url + TOKEN_PATH).status == 400  # no TTL header


def test_the_interruption_notice_carries_the_announced_time(imds) -> None:
    provider = aws(imds)
    assert provider.next_notice(0) is None
    announced = imds.interrupt("terminate", in_s=120)
    notice = provider.next_notice(0)
    assert notice is not None and notice.final
    assert notice.deadline == announced
    assert notice.source == "aws spot/instance-action"
    assert "terminate at " in notice.message and imds.action["time"] in notice.message
    assert provider.next_notice(0) is None  # reported once


@pytest.mark.parametrize("action", ["stop", "hibernate"])
def test_stop_and_hibernate_are_interruptions_too(imds, action: str) -> None:
    announced = imds.interrupt(action, in_s=0 if action == "hibernate" else 120)
    notice = aws(imds).next_notice(0)
    assert notice is not None and notice.final and notice.deadline == announced
    assert f"{action} at" in notice.message


def test_an_unreadable_time_is_taken_as_the_two_minutes_ec2_promises(imds) -> None:
    imds.action = {"action": "terminate", "time": "soon"}
    before = time.time()
    notice = aws(imds).next_notice(0)
    assert notice is not None and notice.final
    assert before + 120 <= notice.deadline <= time.time() + 120
    assert "unreadable" in notice.message and "soon" in notice.message


def test_a_rebalance_recommendation_is_advisory_and_the_interruption_still_comes(imds) -> None:
    provider = aws(imds)
    imds.recommend_rebalance()
    advice = provider.next_notice(0)
    assert advice is not None and not advice.final and advice.deadline is None
    assert "rebalance recommendation" in advice.message
    assert imds.rebalance["noticeTime"] in advice.message
    assert provider.next_notice(0) is None  # not repeated while it stays posted
    announced = imds.interrupt("terminate", in_s=90)
    notice = provider.next_notice(0)
    assert notice is not None and notice.final and notice.deadline == announced


def test_the_interruption_comes_before_a_rebalance_posted_with_it(imds) -> None:
    imds.recommend_rebalance()
    imds.interrupt("terminate", in_s=120)
    provider = aws(imds)
    first, second = provider.next_notice(0), provider.next_notice(0)
    assert first.final and not second.final


def test_an_expired_session_gets_a_new_token(imds) -> None:
    provider = aws(imds)
    assert provider.next_notice(0) is None
    imds.expire_tokens()
    announced = imds.interrupt("terminate", in_s=100)
    notice = provider.next_notice(0)
    assert notice is not None and notice.deadline == announced
    assert len(imds.requests(TOKEN_PATH)) == 2


@pytest.mark.parametrize("kind", ["503", "drop"])
def test_an_unanswered_read_raises_for_the_watcher_to_retry(imds, kind: str) -> None:
    provider = aws(imds)
    imds.fail_next(1, kind)
    with pytest.raises(MetadataError, match="latest/api/token"):
        provider.next_notice(0)
    assert provider.next_notice(0) is None  # the next read works


def test_nothing_listening_raises_metadata_error() -> None:
    with FakeImds() as gone:
        url = gone.url
    with pytest.raises(MetadataError, match="Connection refused"):
        AwsSpotNotices(Settings(metadata_url=url)).next_notice(0)


def test_waits_out_the_interval_between_reads(imds) -> None:
    started = time.monotonic()
    assert aws(imds).next_notice(0.5) is None
    assert 0.45 <= time.monotonic() - started < 2.0


def test_check_describes_both_items(imds) -> None:
    imds.recommend_rebalance()
    lines = aws(imds).check()
    assert lines[0] == f"IMDSv2 at {imds.url}: session token granted"
    assert lines[1] == "spot/instance-action: nothing (404)"
    assert lines[2].startswith("events/recommendations/rebalance: EC2 rebalance recommendation")
