"""Ctrl-C, SIGTERM and `resnetctl stop` as a notice: the first one asks the workers (through
the run's control actor) to checkpoint at their next step boundary and end; the run then stops
as an interrupted run does (MLflow KILLED, exit 130 or 143) with nothing trained lost. A second
one, one before the first step (nothing to keep), or workers that do not end within
`GRACE_SECONDS` stop the run at once, as before.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from rich.console import Console

#: How long the driver waits for the workers to checkpoint and end after a stop request.
GRACE_SECONDS = 600.0


class GracefulStop:
    """The driver's side of a stop request (see the module's docstring)."""

    def __init__(self, control: Any, console: Console, clock: Any = time.monotonic) -> None:
        self.control = control
        self.console = console
        self.clock = clock
        self.requested_at: float | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop was requested and is being carried out."""
        return self.requested_at is not None

    def interrupt(self, training_started: bool) -> None:
        """Handle one interrupt: ask for a stop after a checkpoint, or re-raise it (a second
        interrupt, no step trained yet, or no control actor)."""
        if self.requested or not training_started or self.control is None:
            raise KeyboardInterrupt
        try:
            self.control.request_stop.remote("the driver was interrupted (Ctrl-C or SIGTERM)")
        except Exception:  # noqa: BLE001 - the actor is gone: stop at once
            raise KeyboardInterrupt from None
        self.requested_at = self.clock()
        self.console.print(
            "stopping: the workers checkpoint after their current step, then the run ends "
            "(interrupt again to stop at once)",
            markup=False,
            highlight=False,
        )

    def overdue(self) -> bool:
        """Whether the workers took too long to end after the request."""
        return self.requested_at is not None and self.clock() - self.requested_at > GRACE_SECONDS


@contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Within the block, the first SIGINT or SIGTERM is only recorded (in the yielded list),
    not raised: raised inside a Ray call, a KeyboardInterrupt can break that call's state (the
    progress queue stops answering). The handlers found are still called, so what they record
    (the exit code's signal) is kept; the second signal raises as they do. Outside the main
    thread nothing changes."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: FrameType | None) -> None:
        chained = previous.get(signum)
        if pending or not callable(chained):
            pending.append(signum)
            if callable(chained):
                chained(signum, frame)
            raise KeyboardInterrupt
        pending.append(signum)
        try:
            chained(signum, frame)  # records the signal; its KeyboardInterrupt is deferred
        except KeyboardInterrupt:
            pass

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield pending
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
