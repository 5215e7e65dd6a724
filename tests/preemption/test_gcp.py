"""The GCP provider against a fake metadata server with Compute Engine's hanging GET."""

from __future__ import annotations

import threading
import time

import pytest

from resnetctl.preemption.base import Settings
from resnetctl.preemption.gcp import GcpPreemption
from resnetctl.preemption.metadata import MetadataError, request
from tests.preemption.metadata_servers import PREEMPTED_PATH


def gcp(gce) -> GcpPreemption:
    return GcpPreemption(Settings(metadata_url=gce.url))


def later(seconds: float, action) -> threading.Thread:
    thread = threading.Timer(seconds, action)
    thread.start()
    return thread


def test_the_fake_wants_the_metadata_flavor_header_as_google_does(gce) -> None:
    refused = request("GET", gce.url + PREEMPTED_PATH)
    assert refused.status == 403 and "Metadata-Flavor" in refused.text
    answer = request("GET", gce.url + PREEMPTED_PATH, {"Metadata-Flavor": "Google"})
    assert (answer.status, answer.text) == (200, "FALSE")
    assert answer.headers["metadata-flavor"] == "Google" and answer.headers["etag"]


def test_a_hanging_read_answers_the_moment_the_vm_is_preempted(gce) -> None:
    provider = gcp(gce)
    assert provider.next_notice(60) is None  # the first read answers at once: FALSE
    timer = later(1.0, gce.preempt)
    notice = provider.next_notice(60)
    received = time.time()
    timer.join()
    assert notice is not None and notice.final and notice.source == "gcp instance/preempted"
    assert received - gce.preempted_at < 0.5  # answered on the change, not after 60 s
    assert gce.preempted_at + 30 <= notice.deadline <= received + 30
    (first, hanging) = gce.requests(PREEMPTED_PATH)
    assert first.query == {}
    assert hanging.query["wait_for_change"] == "true" and hanging.query["timeout_sec"] == "60"
    assert hanging.query["last_etag"]
    assert provider.next_notice(0) is None  # reported once


def test_a_preemption_between_two_reads_is_not_missed(gce) -> None:
    provider = gcp(gce)
    assert provider.next_notice(60) is None
    gce.preempt()  # before the hanging read: its last_etag makes it answer at once
    started = time.monotonic()
    notice = provider.next_notice(60)
    assert notice is not None and time.monotonic() - started < 2


def test_a_hanging_read_ends_at_its_timeout(gce) -> None:
    provider = gcp(gce)
    provider.next_notice(60)
    started = time.monotonic()
    assert provider.next_notice(1) is None
    assert 0.9 <= time.monotonic() - started < 5
    assert gce.requests(PREEMPTED_PATH)[-1].query["timeout_sec"] == "1"


def test_an_error_answer_raises_for_the_watcher_to_retry(gce) -> None:
    gce.fail_next(1, "503")
    with pytest.raises(MetadataError, match="HTTP 503"):
        gcp(gce).next_notice(1)


def test_check_reads_the_value_without_waiting(gce) -> None:
    gce.preempt()
    assert gcp(gce).check() == [f"metadata server at {gce.url}: instance/preempted = TRUE"]
