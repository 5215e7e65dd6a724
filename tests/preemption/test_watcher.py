"""The watch loop with real providers against the fake metadata services and a node that
records its drains: what it drains, when, and how it rides out failures."""

from __future__ import annotations

import math
import threading
import time

from resnetctl.preemption.aws import AwsSpotNotices
from resnetctl.preemption.base import Settings
from resnetctl.preemption.gcp import GcpPreemption
from resnetctl.preemption.kubernetes import RAY_STOP_S, PodTermination
from resnetctl.preemption.notice import Notice
from resnetctl.preemption.watcher import Watcher


def run_in_thread(watcher: Watcher) -> tuple[threading.Thread, list[int]]:
    status: list[int] = []
    thread = threading.Thread(target=lambda: status.append(watcher.run()), daemon=True)
    thread.start()
    return thread, status


def messages(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records)


def test_an_interruption_notice_drains_the_node_once_with_its_deadline(
    imds, node, watch_log, caplog
) -> None:
    provider = AwsSpotNotices(Settings(metadata_url=imds.url))
    thread, status = run_in_thread(Watcher(provider, node, wait_s=0.1, log=watch_log))
    time.sleep(0.5)
    assert node.drains == []
    announced = imds.interrupt("terminate", in_s=120)
    thread.join(timeout=10)
    assert status == [0]
    ((drained_at, request),) = node.drains
    assert drained_at - imds.announced_at < 1.0  # read every 0.1 s
    assert request.node_id == node.node_id and request.address == node.address
    # Computed a moment before the drain was recorded: the same whole second, or the next.
    left = math.floor(announced - drained_at)
    assert left <= request.deadline_remaining_s <= left + 1
    assert request.message.startswith("aws spot/instance-action: EC2 spot interruption notice")
    log = messages(caplog)
    assert f"drained Ray node {node.node_id}" in log and "ray drain-node --address" in log


def test_a_metadata_outage_is_retried_with_a_growing_backoff(imds, node, watch_log, caplog):
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        time.sleep(0.01)

    imds.fail_next(3, "drop")
    imds.interrupt("stop", in_s=120)
    provider = AwsSpotNotices(Settings(metadata_url=imds.url, sleep=sleep))
    assert Watcher(provider, node, wait_s=0.1, sleep=sleep, log=watch_log).run() == 0
    assert delays[:3] == [1.0, 2.0, 4.0]
    assert len(node.drains) == 1
    assert messages(caplog).count("retrying in") == 3


def test_a_rebalance_recommendation_is_logged_not_drained(imds, node, watch_log, caplog):
    provider = AwsSpotNotices(Settings(metadata_url=imds.url))
    imds.recommend_rebalance()
    thread, status = run_in_thread(Watcher(provider, node, wait_s=0.1, log=watch_log))
    time.sleep(0.6)
    assert node.drains == [] and status == []  # still watching
    assert "no drain for this advisory notice" in messages(caplog)
    imds.interrupt("terminate", in_s=120)
    thread.join(timeout=10)
    assert status == [0] and len(node.drains) == 1
    assert node.drains[0][1].deadline_remaining_s is not None


def test_drain_on_rebalance_drains_without_a_deadline_then_with_it(imds, node, watch_log):
    provider = AwsSpotNotices(Settings(metadata_url=imds.url))
    imds.recommend_rebalance()
    watcher = Watcher(provider, node, wait_s=0.1, drain_advisories=True, log=watch_log)
    thread, status = run_in_thread(watcher)
    time.sleep(0.6)
    assert [r.deadline_remaining_s for _, r in node.drains] == [None]
    assert "--deadline-remaining-seconds" not in node.drains[0][1].argv()
    imds.interrupt("terminate", in_s=120)
    thread.join(timeout=10)
    assert status == [0]
    assert [r.deadline_remaining_s is None for _, r in node.drains] == [True, False]


def test_a_preemption_on_gcp_drains_with_30_seconds(gce, node, watch_log) -> None:
    provider = GcpPreemption(Settings(metadata_url=gce.url))
    thread, status = run_in_thread(Watcher(provider, node, log=watch_log))  # 60 s hanging reads
    time.sleep(1.0)
    gce.preempt()
    thread.join(timeout=10)
    assert status == [0]
    ((drained_at, request),) = node.drains
    assert drained_at - gce.preempted_at < 0.5
    assert request.deadline_remaining_s in (29, 30)


def test_failed_drains_are_retried(imds, node, watch_log, caplog) -> None:
    node.failures = 2
    imds.interrupt("terminate", in_s=120)
    provider = AwsSpotNotices(Settings(metadata_url=imds.url))
    assert Watcher(provider, node, wait_s=0.1, log=watch_log).run() == 0
    assert node.attempts == 3 and len(node.drains) == 1
    assert "drain attempt 2 failed (RpcError: failed to connect to the GCS)" in messages(caplog)


def test_drains_failing_until_the_deadline_end_with_status_1(imds, node, watch_log, caplog):
    node.failures = 1000
    imds.interrupt("terminate", in_s=2)
    provider = AwsSpotNotices(Settings(metadata_url=imds.url))
    started = time.monotonic()
    assert Watcher(provider, node, wait_s=0.1, log=watch_log).run() == 1
    assert time.monotonic() - started < 10 and node.drains == []
    assert "giving up the drain after" in messages(caplog)


def test_the_watcher_stops_when_ray_stops_on_the_node(imds, node, watch_log, caplog) -> None:
    provider = AwsSpotNotices(Settings(metadata_url=imds.url))
    thread, status = run_in_thread(Watcher(provider, node, wait_s=0.1, log=watch_log))
    time.sleep(0.3)
    node.alive = False
    thread.join(timeout=5)
    assert status == [0] and node.drains == []
    assert "no longer runs here: stopping" in messages(caplog)


def test_an_unexpected_error_is_logged_and_the_watch_goes_on(node, watch_log, caplog) -> None:
    class Flaky:
        name, default_wait_s, holds_until_deadline, cadence = "flaky", 0.0, False, "now"
        calls = 0

        def next_notice(self, wait_s: float) -> Notice | None:
            self.calls += 1
            if self.calls == 1:
                raise KeyError("a bug")
            return Notice("flaky", "going", time.time() + 60)

    sleeps: list[float] = []
    assert Watcher(Flaky(), node, sleep=sleeps.append, log=watch_log).run() == 0
    assert len(node.drains) == 1 and sleeps == [1.0]
    assert "unexpected error: 'a bug'" in messages(caplog)


def test_a_pod_deletion_drains_at_once_and_holds_the_hook_until_the_deadline(node, watch_log):
    started = time.time()
    provider = PodTermination(Settings(grace_period_s=RAY_STOP_S + 2, started_at=started))
    assert Watcher(provider, node, log=watch_log).run() == 0
    returned = time.time()
    ((drained_at, request),) = node.drains
    assert drained_at - started < 0.5 and request.deadline_remaining_s in (1, 2)
    assert started + 2 <= returned < started + 3  # SIGTERM comes when the hook returns


def test_the_hook_returns_early_once_the_node_has_stopped(node, watch_log) -> None:
    provider = PodTermination(Settings(grace_period_s=120, started_at=time.time()))
    threading.Timer(1.0, lambda: setattr(node, "alive", False)).start()
    started = time.monotonic()
    assert Watcher(provider, node, log=watch_log).run() == 0
    assert len(node.drains) == 1 and time.monotonic() - started < 4
