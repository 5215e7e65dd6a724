"""Naming the rank that hung from the heartbeats (`launch.hang`), and reading a stopped
process's stack with py-spy (`launch.stacks`). No Ray is started."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from resnetctl.launch.hang import Heartbeats, RankRecord, Verdict, diagnose, report
from resnetctl.launch.stacks import end_process, read_stack

GLOO_TIMEOUT = RuntimeError(
    "[../third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 10000ms "
    "for recv operation to complete"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _beat(beats: Heartbeats, rank: int, step: int, pid: int | None = None, world: int = 4) -> None:
    beats.beat(
        rank=rank,
        world_size=world,
        pid=pid or 100 + rank,
        node_ip=f"10.0.0.{rank}",
        node_id=f"{rank:02d}" * 28,
        step=step,
    )


def _group(clock: Clock, beats: Heartbeats, stop_rank: int, wait_s: float) -> None:
    """Four ranks beat each second through step 37; `stop_rank` stops; the others beat on
    while they wait `wait_s` seconds in the collective of step 38."""
    for second in range(5):
        clock.now = 1000.0 + second
        for rank in range(4):
            _beat(beats, rank, 37)
    for second in range(int(wait_s)):
        clock.now = 1005.0 + second
        for rank in range(4):
            if rank != stop_rank:
                _beat(beats, rank, 37)


@pytest.mark.parametrize("stop_rank", [0, 2])
def test_the_silent_rank_is_named_not_the_ranks_whose_timeouts_ray_saw(stop_rank: int) -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank, wait_s=10)
    # Ray Train's poll caught the timeouts of two waiting ranks; a third reported its own.
    others = [rank for rank in range(4) if rank != stop_rank]
    errors = {others[0]: GLOO_TIMEOUT, others[1]: GLOO_TIMEOUT}
    beats.timed_out(
        rank=others[2],
        world_size=4,
        pid=100 + others[2],
        node_ip=f"10.0.0.{others[2]}",
        node_id=f"{others[2]:02d}" * 28,
        step=37,
        stack="Traceback ...\nRuntimeError: ... Timed out waiting 10000ms for recv operation",
    )
    verdict = diagnose(beats.close(), errors, timeout_s=10)
    assert verdict is not None
    assert verdict.hung == (stop_rank,) and verdict.waited == tuple(others)
    assert verdict.silent_s[stop_rank] == pytest.approx(10.0)
    line = verdict.line()
    node = f"{stop_rank:02d}" * 4
    assert line.startswith(
        f"hang: rank {stop_rank} on node 10.0.0.{stop_rank} ({node}, pid {100 + stop_rank}) "
        "stopped after step 37: no heartbeat for 10 s before the group failed; "
    )
    waited = ", ".join(str(rank) for rank in others)
    assert f"ranks {waited} timed out waiting for it (failure.collective_timeout_s: 10 s)" in line


def test_two_stopped_ranks_on_two_nodes_are_both_named() -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    for second in range(12):
        clock.now = 1000.0 + second
        for rank in range(4):
            if second < 2 or rank in (0, 2):  # ranks 1 and 3 stop after two seconds
                _beat(beats, rank, 5)
    verdict = diagnose(beats.close(), {0: GLOO_TIMEOUT, 2: GLOO_TIMEOUT}, timeout_s=10)
    assert verdict is not None and verdict.hung == (1, 3)
    line = verdict.line()
    assert "rank 1 on node 10.0.0.1 (01010101, pid 101) stopped after step 5" in line
    assert "; rank 3 on node 10.0.0.3 (03030303, pid 103) stopped after step 5" in line
    assert "ranks 0, 2 timed out waiting for them" in line


def test_a_crashed_rank_is_no_hang_even_when_its_peers_noticed_late() -> None:
    # Rank 1 was killed during a long validation: its beats stopped 8 s before the others'
    # collective failed on the lost connection. Its own death is its error: no hang.
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank=1, wait_s=8)
    errors = {1: RuntimeError("The actor died unexpectedly"), 0: RuntimeError("Connection reset")}
    assert diagnose(beats.close(), errors, timeout_s=10) is None


def test_an_nccl_teardown_names_the_silent_rank_without_any_timeout_text() -> None:
    # NCCL's watchdog took the waiting ranks' processes down: Ray reports them dead, and no
    # Python timeout was raised anywhere. The stopped rank still stands out by its silence.
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank=3, wait_s=600)
    errors = {0: RuntimeError("ActorDiedError"), 1: RuntimeError("ActorDiedError")}
    verdict = diagnose(beats.close(), errors, timeout_s=600)
    assert verdict is not None and verdict.hung == (3,) and verdict.waited == ()
    assert verdict.line().endswith(
        "no heartbeat for 600 s before the group failed (failure.collective_timeout_s: 600 s); "
        "every rank's stack is in the run's log"
    )


class WorkerHealthCheckTimeoutError(RuntimeError):
    """Ray Train's, by name (ray.train.v2._internal.exceptions)."""


def test_a_rank_ray_train_marked_dead_for_not_answering_is_named_under_a_longer_timeout() -> None:
    # A 2-hour timeout: Ray Train's health check (600 s) gives up on the stopped rank first.
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank=2, wait_s=600)
    message = "A worker health check has been hanging for 600.12 seconds. Marking it as dead."
    verdict = diagnose(beats.close(), {2: WorkerHealthCheckTimeoutError(message)}, timeout_s=7200)
    assert verdict is not None and verdict.hung == (2,) and verdict.waited == ()
    line = verdict.line()
    assert "rank 2 on node 10.0.0.2" in line and "no heartbeat for 600 s" in line


def test_timeouts_with_every_rank_alive_are_reported_as_such() -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank=-1, wait_s=10)  # nobody stops
    verdict = diagnose(beats.close(), {0: GLOO_TIMEOUT, 1: GLOO_TIMEOUT}, timeout_s=10)
    assert verdict is not None and verdict.hung == () and verdict.waited == (0, 1)
    assert verdict.line().startswith("hang: ranks 0, 1 timed out in a collective")
    assert "no rank is known to have stopped" in verdict.line()


def test_a_failure_without_timeout_or_silence_is_no_hang() -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank=-1, wait_s=2)
    assert diagnose(beats.close(), {0: ValueError("nan loss")}, timeout_s=10) is None
    assert diagnose([], {0: GLOO_TIMEOUT}, timeout_s=10) is None


def test_a_closed_group_is_forgotten_and_its_stragglers_ignored() -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    _group(clock, beats, stop_rank=1, wait_s=10)
    assert [record.rank for record in beats.close()] == [0, 1, 2, 3]
    assert beats.close() == []  # a second call for the same failure finds nothing
    _beat(beats, 0, 37)  # a beat of the old group arriving late
    assert beats.close() == []
    # The restarted group's processes are new: their beats are the new records.
    _beat(beats, 0, 40, pid=200)
    _beat(beats, 1, 40, pid=201)
    assert [(r.rank, r.pid, r.step) for r in beats.close()] == [(0, 200, 40), (1, 201, 40)]


def test_a_new_group_of_another_size_replaces_the_old_records() -> None:
    clock = Clock()
    beats = Heartbeats(clock)
    for rank in range(4):
        _beat(beats, rank, 5)
    _beat(beats, 0, 5, pid=300, world=2)
    assert [(r.rank, r.world_size) for r in beats.close()] == [(0, 2)]


def test_the_report_holds_every_ranks_stack_under_a_header_naming_its_process() -> None:
    records = [
        RankRecord(0, 2, 11, "10.0.0.1", "ab" * 28, step=7, seen=0.0),
        RankRecord(1, 2, 12, "10.0.0.2", "cd" * 28, step=7, seen=10.0, stack="Traceback: waited"),
    ]
    verdict = Verdict(10, tuple(records), hung=(0,), waited=(1,), silent_s={0: 10.0, 1: 0.0})
    text = report(verdict, {0: "Thread 11 (idle)\n  forward (model.py:3)", 1: "Traceback: waited"})
    lines = text.splitlines()
    assert lines[0] == "===== resnetctl: hang diagnosis =====" and lines[1] == verdict.line()
    assert lines[2] == (
        "----- rank 0 (pid 11 on node 10.0.0.1 (abababab)): no heartbeat for 10 s, last step 7; "
        "its stack, read by py-spy:"
    )
    assert lines[3:5] == ["Thread 11 (idle)", "  forward (model.py:3)"]
    assert lines[5].startswith("----- rank 1 (pid 12 on node 10.0.0.2 (cdcdcdcd)): timed out")
    assert lines[-1] == "===== end of hang diagnosis ====="


def test_a_traceback_shared_by_many_waiting_ranks_is_shown_once() -> None:
    waited = "Traceback ...\nRuntimeError: Timed out waiting 10000ms for recv operation"
    records = [RankRecord(0, 3, 10, "10.0.0.1", "ab" * 28, step=3, seen=0.0)]
    records += [
        RankRecord(r, 3, 10 + r, "10.0.0.1", "ab" * 28, step=3, seen=10.0, stack=waited)
        for r in (1, 2)
    ]
    verdict = Verdict(10, tuple(records), hung=(0,), waited=(1, 2), silent_s={0: 10, 1: 0, 2: 0})
    text = report(verdict, {0: "Thread 10 (idle)", 1: waited, 2: waited})
    assert text.count("RuntimeError: Timed out waiting") == 1
    assert text.splitlines()[-2].startswith("----- rank 2 (pid 12 on node 10.0.0.1 (abababab)):")
    assert text.splitlines()[-2].endswith(": as rank 1's")


STUCK = """
import sys
def stuck_in_a_collective():
    sys.stdout.write("ready\\n"); sys.stdout.flush()
    while True:
        pass
stuck_in_a_collective()
"""


def test_py_spy_reads_the_stack_of_a_stopped_process_which_then_is_ended() -> None:
    process = subprocess.Popen([sys.executable, "-c", STUCK], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        stack = read_stack(process.pid)
        assert f"Process {process.pid}:" in stack and "stuck_in_a_collective" in stack, stack
        # Only a process that is still what the heartbeat said it was is ended.
        assert end_process(process.pid, "ray::RayTrainWorker").startswith("not ended: ")
        assert process.poll() is None
        assert end_process(process.pid, "stuck_in_a_collective") == "ended"
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.send_signal(signal.SIGCONT)
        process.wait(timeout=10)
    assert end_process(process.pid) == "already gone"
    assert read_stack(process.pid).startswith(f"py-spy could not read process {process.pid}: ")
