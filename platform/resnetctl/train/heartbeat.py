"""Each rank's heartbeat: the evidence the driver needs to name a rank that hung.

A rank that hangs cannot say so itself: a SIGSTOPped process runs nothing at all, not even
`faulthandler`'s watchdog thread; a process wedged in C code holding the GIL runs no Python.
So every rank says, from a thread of its own, once a second, that it is alive and which step it
last completed; the driver's monitor (`launch.hang`) stamps each beat on its own clock. When
the group fails, a rank whose beats stopped long before the others' and that raised nothing
itself is the one that hung. The ranks that waited for it in a collective raise a timeout
(`failure.collective_timeout_s`); each reports that timeout with its traceback, which is
exactly where it waited, before Ray Train sees the error.

`faulthandler` is switched on for every thread, so that a process that NCCL's watchdog tears
down after a timeout (`TORCH_NCCL_ASYNC_ERROR_HANDLING=1`, SIGABRT from a C++ thread) prints the
Python stack of its training thread too, not only of the aborting thread that has none.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between two beats of a rank.
BEAT_INTERVAL_S = 1.0

#: What a collective that waited too long raises, by what waited: gloo's transport
#: ("Timed out waiting 10000ms for recv operation to complete" in a send or receive; "Application
#: timeout caused pair closure" where a broadcast, such as DDP's of its buffers, waited), NCCL's
#: watchdog ("Watchdog caught collective operation timeout", or "NCCL communicator was aborted"
#: in the operation after it), Ray Train's own barriers (`BroadcastCollectiveTimeoutError`: "The
#: collective operation timed out after ... seconds").
COLLECTIVE_TIMEOUT = re.compile(
    r"Timed out waiting \d+ms for (?:send|recv) operation"
    r"|Application timeout caused pair closure"
    r"|collective operation timeout"
    r"|collective operation timed out"
    r"|BroadcastCollectiveTimeoutError"
    r"|NCCL communicator was aborted"
)


def is_collective_timeout(error: BaseException | str) -> bool:
    """Whether `error` (an exception, with its causes, or its text) is a collective that timed
    out waiting for a peer. Ray's wrappers of a worker's exception carry its traceback as
    text, so the text is searched."""
    seen: set[int] = set()
    current: BaseException | str | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, str):
            return bool(COLLECTIVE_TIMEOUT.search(current))
        if COLLECTIVE_TIMEOUT.search(f"{type(current).__name__}: {current}"):
            return True
        current = current.__cause__ or current.__context__
    return False


class RankHeartbeat:
    """Sends `identity` with the rank's last completed step to `send` every `interval_s`
    seconds from a daemon thread; `report_timeout` sends a collective timeout with its
    traceback. A failing `send` never stops training: the heartbeat is evidence, not a duty.

    What a beat is answered with (`resolve` turns `send`'s return value into it: the run's
    control actor answers with the driver's stop request) is kept in `reply`, for the step
    boundaries to read without waiting (`train.notices`)."""

    def __init__(
        self,
        send: Callable[[str, dict[str, Any]], Any],
        identity: dict[str, Any],
        interval_s: float = BEAT_INTERVAL_S,
        resolve: Callable[[Any], Any] = lambda answer: answer,
    ) -> None:
        self._send = send
        self._resolve = resolve
        self.identity = dict(identity)
        self.interval_s = interval_s
        self.reply: dict[str, Any] = {}
        self._progress: Callable[[], int | None] = lambda: None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned = False

    def follow(self, runner: Any) -> Any:
        """Report `runner.step` from now on; returns `runner`."""
        self._progress = lambda: int(runner.step)
        return runner

    def step(self) -> int | None:
        """The last completed optimiser step (None before the runner exists)."""
        return self._progress()

    def beat(self) -> None:
        """Send one beat now, and keep its answer."""
        answer = self._call("beat", {**self.identity, "step": self.step()})
        if answer is None:
            return
        try:
            reply = self._resolve(answer)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._warn(exc)
            return
        if isinstance(reply, dict):
            self.reply = reply

    def report_timeout(self, error: BaseException) -> Any:
        """Send `error`, a collective timeout, with its traceback: where this rank waited.
        Returns what `send` returned (a Ray object reference, to wait on)."""
        stack = "".join(traceback.format_exception(error)).rstrip()
        return self._call("timed_out", {**self.identity, "step": self.step(), "stack": stack})

    def start(self) -> None:
        """Beat once now, then every `interval_s` seconds until `stop`."""
        self.beat()
        self._thread = threading.Thread(target=self._run, name="resnetctl-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating (the thread ends within `interval_s`)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()

    def _call(self, what: str, fields: dict[str, Any]) -> Any:
        try:
            return self._send(what, fields)
        except Exception as exc:  # noqa: BLE001 - see the class docstring
            self._warn(exc)
            return None

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            log.warning("rank %s: heartbeat not sent: %s", self.identity.get("rank"), exc)


class _NoHeartbeat:
    """What `rank_heartbeat` yields when no monitor was given (tests, sweeps)."""

    reply: dict[str, Any] = {}

    def follow(self, runner: Any) -> Any:
        return runner


@contextmanager
def rank_heartbeat(monitor: Any, placement: Any) -> Iterator[Any]:
    """Beat to `monitor` (the run's `launch.control.RunControl`; None: no heartbeat) while the block
    runs, as the rank of `placement`, and report a collective timeout that ends the block.

    The report is waited for (a few seconds at most) before the error goes on to Ray Train, so
    the driver has it when it sees the group fail.
    """
    if monitor is None:
        yield _NoHeartbeat()
        return
    import ray

    identity = {
        "rank": placement.rank,
        "world_size": placement.world_size,
        "pid": os.getpid(),
        "node_ip": ray.util.get_node_ip_address(),
        "node_id": ray.get_runtime_context().get_node_id(),
    }
    _dump_all_threads_on_fatal_signals()
    heart = RankHeartbeat(
        lambda what, fields: getattr(monitor, what).remote(**fields),
        identity,
        resolve=lambda answer: ray.get(answer, timeout=BEAT_INTERVAL_S * 10),
    )
    heart.start()
    try:
        yield heart
    except BaseException as exc:
        if is_collective_timeout(exc):
            sent = heart.report_timeout(exc)
            if sent is not None:
                try:
                    ray.get(sent, timeout=5)
                except Exception:  # noqa: BLE001 - the timeout itself goes on to Ray Train
                    pass
        raise
    finally:
        heart.stop()


def _dump_all_threads_on_fatal_signals() -> None:
    # Ray enables faulthandler for the current thread only: NCCL's watchdog aborts the process
    # from a C++ thread with no Python frames, which would leave the dump empty.
    stream = sys.__stderr__
    if stream is None:
        return
    try:
        faulthandler.enable(file=stream, all_threads=True)
    except (OSError, ValueError, AttributeError):  # a stream without a file descriptor
        pass
