"""A rank's heartbeat (`train.heartbeat`): what it sends, and which errors are collective
timeouts. The gloo error is a real one, from two gloo processes of which one never joins."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from resnetctl.train.heartbeat import RankHeartbeat, is_collective_timeout, rank_heartbeat
from tests.processes import free_port


def _wait_for_a_peer_that_never_sends(rank: int, port: int, result: dict) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=2),
    )
    try:
        if rank == 0:
            started = time.monotonic()
            try:
                dist.all_reduce(torch.ones(3))
            except RuntimeError as error:
                result["error"] = f"{type(error).__name__}: {error}"
                result["seconds"] = time.monotonic() - started
        else:
            time.sleep(3)  # alive, but never in the collective
    finally:
        dist.destroy_process_group()


def _entry(rank: int, port: int, out: dict) -> None:
    _wait_for_a_peer_that_never_sends(rank, port, out)


def test_gloo_raises_a_collective_timeout_within_the_timeout() -> None:
    with mp.Manager() as manager:
        result = manager.dict()
        mp.spawn(_entry, args=(free_port(), result), nprocs=2, join=True)
        error, seconds = result["error"], result["seconds"]
    assert is_collective_timeout(error), error
    assert 2 <= seconds < 5, seconds  # the timeout given to the process group, not gloo's 30 min


@pytest.mark.parametrize(
    "text",
    [
        "RuntimeError: [gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms for "
        "recv operation to complete",
        "RuntimeError: Application timeout caused pair closure",
        "[Rank 0] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12, "
        "OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600038 milliseconds before timing out.",
        "DistBackendError: NCCL communicator was aborted on rank 1.",
        "BroadcastCollectiveTimeoutError: The collective operation timed out after 10.00 seconds. "
        "The following ranks have not joined the collective operation: [1]",
    ],
)
def test_timeouts_of_gloo_nccl_and_ray_barriers_are_recognised(text: str) -> None:
    assert is_collective_timeout(text)


def test_other_failures_are_not_timeouts_even_deep_in_a_chain() -> None:
    assert not is_collective_timeout(RuntimeError("Connection closed by peer [10.0.0.2]:4242"))
    assert not is_collective_timeout("ActorDiedError: The actor died unexpectedly")
    try:
        try:
            raise RuntimeError("Timed out waiting 600000ms for send operation to complete")
        except RuntimeError as inner:
            raise ValueError("the step failed") from inner
    except ValueError as outer:
        assert is_collective_timeout(outer)  # a wrapper's cause counts


class Runner:
    step = 0


def test_the_heartbeat_sends_identity_and_step_and_survives_a_failing_send() -> None:
    sent: list[tuple[str, dict]] = []
    failures = {"left": 2}

    def send(what: str, fields: dict) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("monitor gone")
        sent.append((what, fields))

    heart = RankHeartbeat(send, {"rank": 3, "pid": 42}, interval_s=0.05)
    runner = heart.follow(Runner())
    heart.start()  # its first beat fails, and the thread goes on
    time.sleep(0.3)
    runner.step = 17
    time.sleep(0.3)
    heart.stop()
    time.sleep(0.1)
    count = len(sent)
    time.sleep(0.2)
    assert len(sent) == count  # stopped
    assert all(what == "beat" and fields["rank"] == 3 for what, fields in sent)
    steps = [fields["step"] for _, fields in sent]
    assert steps[0] == 0 and steps[-1] == 17 and steps == sorted(steps)
    assert not any(t.name == "resnetctl-heartbeat" and t.is_alive() for t in threading.enumerate())


def test_a_timeout_is_sent_with_the_traceback_where_the_rank_waited() -> None:
    sent: list[tuple[str, dict]] = []
    heart = RankHeartbeat(lambda what, fields: sent.append((what, fields)), {"rank": 1})

    def all_reduce_of_the_gradients() -> None:
        raise RuntimeError("Timed out waiting 10000ms for recv operation to complete")

    try:
        all_reduce_of_the_gradients()
    except RuntimeError as error:
        heart.report_timeout(error)
    ((what, fields),) = sent
    assert what == "timed_out" and fields["rank"] == 1 and fields["step"] is None
    assert fields["stack"].startswith("Traceback (most recent call last):")
    assert "in all_reduce_of_the_gradients" in fields["stack"]


def test_without_a_monitor_there_is_no_heartbeat() -> None:
    placement = SimpleNamespace(rank=0, world_size=2)
    runner = Runner()
    with rank_heartbeat(None, placement) as heart:
        assert heart.follow(runner) is runner
    assert not any(t.name == "resnetctl-heartbeat" for t in threading.enumerate())
