"""Ctrl-C and SIGTERM while a run trains (`launch.stopping`): the first is held back while the
driver waits in Ray calls and becomes a stop request; the run then ends with the signal's own
exit code; a second one stops at once."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from rich.console import Console

from resnetctl.cli.interrupt import stop_on_signals
from resnetctl.launch.stopping import GracefulStop, deferred_interrupts, deliver


class Control:
    """The control actor's `request_stop`, as a remote call that records."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.request_stop = self

    def remote(self, reason: str) -> None:
        self.requests.append(reason)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_the_first_signal_is_held_back_then_delivered_with_its_exit_code(
    signum: int, code: int
) -> None:
    with stop_on_signals() as interruption:
        with deferred_interrupts() as pending:
            os.kill(os.getpid(), signum)  # nothing raised here, inside Ray calls
            assert pending == [signum]
        with pytest.raises(KeyboardInterrupt):
            deliver(pending[0])
    assert interruption.exit_code == code


def test_a_second_signal_stops_at_once() -> None:
    with stop_on_signals() as interruption:
        commands = signal.getsignal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            with deferred_interrupts() as pending:
                os.kill(os.getpid(), signal.SIGTERM)
                os.kill(os.getpid(), signal.SIGTERM)
        assert pending == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is commands  # the command's handler is back
    assert interruption.exit_code == 143


def test_a_stop_request_goes_to_the_workers_once_training_started() -> None:
    control: Any = Control()
    clock = iter([100.0, 100.0 + 601])
    stop = GracefulStop(control, Console(file=open(os.devnull, "w")), clock=lambda: next(clock))
    assert not stop.interrupt(training_started=False)  # nothing trained: stop at once
    assert control.requests == []
    assert stop.interrupt(training_started=True)
    assert stop.requested and len(control.requests) == 1
    assert stop.overdue()  # the workers did not end within the grace period
