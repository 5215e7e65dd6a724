"""Ctrl-C and SIGTERM stop `submit` and `tune` the same way.

Python turns SIGINT into KeyboardInterrupt, which the launchers answer by marking the MLflow run
KILLED and shutting their Ray down; SIGTERM (`kill`, Ray Jobs' `stop`, a scheduler's grace
period) would end the process without any of that. Inside `stop_on_signals` SIGTERM takes the
Ctrl-C path too: a KeyboardInterrupt, or, while Ray Tune runs, Tune's own SIGINT handler, which
stops the trials and saves the sweep's state for `--resume`. The command then exits with
128 + the signal's number, as a shell reports a process a signal ended: 130 for SIGINT, 143 for
SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import FrameType


@dataclass
class Interruption:
    """The stop signal a command received, if any."""

    signum: int | None = None

    @property
    def exit_code(self) -> int:
        """128 + the signal's number; SIGINT's when the signal was not seen by this module
        (Ray Tune's SIGINT handler takes Ctrl-C while a sweep runs)."""
        return 128 + int(self.signum or signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[Interruption]:
    """Within the block, SIGINT and SIGTERM both raise KeyboardInterrupt (or run the SIGINT
    handler a library installed meanwhile); the previous handlers come back afterwards.

    `launch.embedded` keeps the SIGTERM handler across `ray.init`, which would replace it.
    """
    seen = Interruption()
    if threading.current_thread() is not threading.main_thread():
        yield seen  # only the main thread may set handlers
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        seen.signum = signum
        raise KeyboardInterrupt

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        seen.signum = signum
        current = signal.getsignal(signal.SIGINT)
        if callable(current) and current is not on_sigint:
            current(signal.SIGINT, frame)
        else:
            raise KeyboardInterrupt

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, on_sigint)
    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield seen
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
