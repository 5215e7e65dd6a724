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

    def interrupt(self, training_started: bool) -> bool:
        """Handle the first interrupt: ask for a stop after a checkpoint and return True, or
        return False when the run must stop at once (no step trained yet: nothing to keep; no
        control actor)."""
        if not training_started or self.control is None:
            return False
        try:
            self.control.request_stop.remote("the driver was interrupted (Ctrl-C or SIGTERM)")
        except Exception:  # noqa: BLE001 - the actor is gone: stop at once
            return False
        self.requested_at = self.clock()
        self.console.print(
            "stopping: the workers checkpoint after their current step, then the run ends "
            "(interrupt again to stop at once)",
            markup=False,
            highlight=False,
        )
        return True

    def overdue(self) -> bool:
        """Whether the workers took too long to end after the request."""
        return self.requested_at is not None and self.clock() - self.requested_at > GRACE_SECONDS


@contextmanager
def deferred_interrupts() -> Iterator[list[int]]:
    """Within the block, the first SIGINT or SIGTERM is only recorded (in the yielded list),
    not raised: raised inside a Ray call, a KeyboardInterrupt can break that call's state (the
    progress queue stops answering). A second signal puts the handlers found back and goes to
    them at once (they raise). After the block, `deliver` hands a recorded signal to those
    handlers, so that what they record (the exit code's signal) is kept. Outside the main
    thread nothing changes."""
    pending: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield pending
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)

    def handler(signum: int, frame: FrameType | None) -> None:
        if not pending:
            pending.append(signum)
            return
        restore()
        deliver(signum, frame)

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield pending
    finally:
        restore()


def deliver(signum: int, frame: FrameType | None = None) -> None:
    """Hand `signum` to its current handler (the command's: it records the signal and raises
    KeyboardInterrupt); raise KeyboardInterrupt if that handler does not."""
    chosen = signal.getsignal(signum)
    if callable(chosen):
        chosen(signum, frame)
    raise KeyboardInterrupt
