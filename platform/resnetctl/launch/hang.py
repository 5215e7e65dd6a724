"""Which rank hung, and every rank's stack, in the run's log before the group restarts.

When a rank stops (a SIGSTOPped or frozen process, a node that stops answering without dying),
the others wait for it in their next collective until `failure.collective_timeout_s` ends the
wait (`launch.collectives`); Ray Train then fails the group and restarts it from the last
checkpoint. The error Ray Train sees is the waiting ranks' timeout: it names the ranks that did
nothing wrong. The evidence for the one that hung is its heartbeat (`train.heartbeat`):

* `Heartbeats`, an actor on the driver's node, keeps what each rank of the current group last
  said, stamped on its own clock (nodes' clocks may disagree).
* `diagnose` names the ranks whose beats stopped at least half the timeout before the last
  beat of any rank, and which raised nothing themselves: a crashed rank's error is its own,
  a rank that kept beating was alive and waiting. Ranks that raised a collective timeout are
  named as the ones that waited.
* `HangCallback`, a Ray Train callback on the controller, runs it when the group fails, writes
  every rank's stack to the log (the waiting ranks' tracebacks where they timed out; py-spy's
  reading of the others' processes, taken without stopping them, which works on a stopped
  process where py-spy's default mode and Ray dashboard's traceback view fail), ends the hung
  processes so that the restart does not wait for them, and puts one line on the terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ray.train import UserCallback

from resnetctl.launch.progress import NOTE_EVENT
from resnetctl.launch.stacks import end_process, on_nodes, read_stack

#: What Ray names a Ray Train worker's process (its command line): a hung rank's process is
#: ended only when its pid still names one.
WORKER_TITLE = "ray::RayTrainWorker"


@dataclass
class RankRecord:
    """What one rank of the current worker group last said."""

    rank: int
    world_size: int
    pid: int
    node_ip: str
    node_id: str
    step: int | None = None
    seen: float = 0.0  # the monitor's clock at the rank's last beat
    stack: str | None = None  # the traceback of the collective timeout it raised, if any

    @property
    def where(self) -> str:
        """`pid 4242 on node 10.0.0.5 (1a2b3c4d)`."""
        return f"pid {self.pid} on node {self.node_ip} ({self.node_id[:8]})"


class Heartbeats:
    """The ranks' heartbeats, on one clock. Part of the run's control actor
    (`launch.control.RunControl`); the ranks call `beat` and `timed_out`, the controller's
    callback `close` when the group failed."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._records: dict[int, RankRecord] = {}
        self._closed: set[int] = set()  # pids of groups already diagnosed

    def beat(
        self,
        *,
        rank: int,
        world_size: int,
        pid: int,
        node_ip: str,
        node_id: str,
        step: int | None,
    ) -> None:
        """Rank `rank` is alive and has completed `step`."""
        if pid in self._closed:  # a straggler of a group already diagnosed
            return
        record = self._records.get(rank)
        if record is None or record.pid != pid:
            # A new process for this rank: a new worker group, and one of another size (a
            # resize) leaves no rank of the old one to describe.
            self._records = {
                r: old for r, old in self._records.items() if old.world_size == world_size
            }
            record = RankRecord(rank, world_size, pid, node_ip, node_id)
            self._records[rank] = record
        record.step = step
        record.seen = self._clock()

    def timed_out(self, *, stack: str, **identity: Any) -> None:
        """Rank `rank` raised a collective timeout; `stack` is its traceback."""
        self.beat(**identity)
        record = self._records.get(identity["rank"])
        if record is not None and record.pid == identity["pid"]:
            record.stack = stack

    def close(self) -> list[RankRecord]:
        """The current group's records, in rank order; later beats of its processes are
        ignored."""
        records = [self._records[rank] for rank in sorted(self._records)]
        self._closed.update(record.pid for record in records)
        self._records = {}
        return records


@dataclass(frozen=True)
class Verdict:
    """The outcome of `diagnose`: the ranks that hung and those that timed out waiting."""

    timeout_s: float
    records: tuple[RankRecord, ...]
    hung: tuple[int, ...]
    waited: tuple[int, ...]
    silent_s: Mapping[int, float] = field(default_factory=dict)

    def record(self, rank: int) -> RankRecord:
        """The record of `rank`."""
        return next(record for record in self.records if record.rank == rank)

    def line(self) -> str:
        """The terminal's one line."""
        limit = f"failure.collective_timeout_s: {self.timeout_s:g} s"
        waited = _ranks(self.waited)
        if not self.hung:
            return (
                f"hang: {waited} timed out in a collective ({limit}), and every rank kept its "
                "heartbeat: no rank is known to have stopped (collectives called in a different "
                "order on some ranks?); every rank's stack is in the run's log"
            )
        who = "; ".join(self._hung_rank(rank) for rank in self.hung)
        them = "it" if len(self.hung) == 1 else "them"
        after = f" ({limit})"
        if self.waited:
            after = f"; {waited} timed out waiting for {them}{after}"
        return f"hang: {who}{after}; every rank's stack is in the run's log"

    def _hung_rank(self, rank: int) -> str:
        record = self.record(rank)
        step = "before its first step" if not record.step else f"after step {record.step}"
        return (
            f"rank {rank} on node {record.node_ip} ({record.node_id[:8]}, pid {record.pid}) "
            f"stopped {step}: no heartbeat for {self.silent_s[rank]:.0f} s before the group failed"
        )


def _ranks(ranks: Iterable[int]) -> str:
    ranks = list(ranks)
    return ("rank " if len(ranks) == 1 else "ranks ") + ", ".join(str(rank) for rank in ranks)


def diagnose(
    records: Iterable[RankRecord], errors: Mapping[int, Any], timeout_s: float
) -> Verdict | None:
    """Name the ranks that hung, from the group's heartbeat records and the errors Ray Train
    collected (rank -> exception): None when the failure is no hang (no collective timed out
    and no rank fell silent)."""
    from resnetctl.train.heartbeat import is_collective_timeout

    records = tuple(sorted(records, key=lambda record: record.rank))
    if not records:
        return None
    waited = {record.rank for record in records if record.stack is not None}
    waited |= {rank for rank, error in errors.items() if is_collective_timeout(error)}
    # Ray Train's own verdict on a worker that left its poll unanswered for
    # RAY_TRAIN_WORKER_HEALTH_CHECK_TIMEOUT_S (600 s): evidence of a hang, not an error of its
    # own; it comes first when the spec's timeout is longer.
    unanswered = {rank for rank, error in errors.items() if _health_check_timed_out(error)}
    newest = max(record.seen for record in records)
    silent = {record.rank: newest - record.seen for record in records}
    hung = tuple(
        rank
        for rank, quiet in silent.items()
        if (quiet >= timeout_s / 2 and rank not in errors and rank not in waited)
        or rank in unanswered
    )
    if not hung and not waited:
        return None
    return Verdict(timeout_s, records, hung, tuple(sorted(waited)), silent)


def _health_check_timed_out(error: Any) -> bool:
    return "WorkerHealthCheckTimeoutError" in type(error).__name__ or (
        "health check has been hanging" in str(error)
    )


def report(verdict: Verdict, stacks: Mapping[int, str]) -> str:
    """The block the run's log gets: the verdict and every rank's stack (a stack already shown
    for a lower rank is named, not repeated: hundreds of waiting ranks share one)."""
    lines = ["===== resnetctl: hang diagnosis =====", verdict.line()]
    shown: dict[str, int] = {}
    for record in verdict.records:
        if record.stack is not None:
            what = f"timed out in a collective after step {record.step}; its traceback"
        elif record.rank in verdict.hung:
            what = (
                f"no heartbeat for {verdict.silent_s[record.rank]:.0f} s, last step "
                f"{record.step}; its stack, read by py-spy"
            )
        else:
            what = f"last step {record.step}; its stack, read by py-spy"
        stack = stacks.get(record.rank, "(none)")
        header = f"----- rank {record.rank} ({record.where}): {what}:"
        if stack in shown:
            lines.append(f"{header} as rank {shown[stack]}'s")
            continue
        shown[stack] = record.rank
        lines += [header, stack]
    lines.append("===== end of hang diagnosis =====")
    return "\n".join(lines)


class HangCallback(UserCallback):
    """On the Ray Train controller: when the worker group fails, `diagnose` it; for a hang,
    write every rank's stack to the log, end the hung processes and put the verdict's line in
    `progress` for the terminal, all before Ray Train restarts the group."""

    def __init__(self, monitor: Any, timeout_s: float, progress: Any = None) -> None:
        self.monitor = monitor
        self.timeout_s = float(timeout_s)
        self.progress = progress

    def after_exception(self, run_context: Any, worker_exceptions: dict[int, Exception]) -> None:
        """Called by Ray Train when workers failed (it restarts the group after it)."""
        try:
            self._diagnose(worker_exceptions)
        except Exception as exc:  # noqa: BLE001 - the diagnosis must never stop the restart
            print(f"resnetctl: no hang diagnosis: {exc!r}", file=sys.stderr, flush=True)

    def _diagnose(self, worker_exceptions: dict[int, Exception]) -> None:
        import ray

        records = ray.get(self.monitor.close.remote(), timeout=10)
        verdict = diagnose(records, worker_exceptions, self.timeout_s)
        if verdict is None:
            return
        # Read on every node at once; the hung processes are ended only once read.
        unread = [record for record in verdict.records if record.stack is None]
        read = on_nodes([(record.node_id, read_stack, (record.pid,)) for record in unread])
        stacks = {record.rank: record.stack for record in verdict.records if record.stack}
        stacks.update(zip((record.rank for record in unread), read, strict=True))
        hung = [verdict.record(rank) for rank in verdict.hung]
        ended = on_nodes([(r.node_id, end_process, (r.pid, WORKER_TITLE)) for r in hung])
        text = report(verdict, stacks)
        outcomes = zip(hung, ended, strict=True)
        if ended:
            text += "\n" + "; ".join(f"rank {r.rank}'s process: {done}" for r, done in outcomes)
        # The controller's output reaches the driver, and with it the run's log.
        print(text, file=sys.stderr, flush=True)
        self._put({"kind": NOTE_EVENT, "line": verdict.line()})

    def _put(self, event: dict[str, Any]) -> None:
        if self.progress is None:
            return
        try:
            self.progress.put(event, timeout=10)
        except Exception:  # noqa: BLE001 - the terminal line is optional, the restart is not
            pass
