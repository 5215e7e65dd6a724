"""SIGTERM takes Ctrl-C's path in `submit` and `tune` (the end-to-end runs are in
tests/launch/test_local.py and tests/tune/test_sweep.py): real signals sent to this process."""

from __future__ import annotations

import os
import signal
import time

import pytest

from resnetctl.cli.interrupt import stop_on_signals


def _deliver(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(0.2)  # the handler runs in the main thread at the next bytecode boundary


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_raises_keyboard_interrupt_and_names_its_exit_code(
    signum: int, code: int
) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(KeyboardInterrupt), stop_on_signals() as interruption:
        _deliver(signum)
    assert interruption.signum == signum and interruption.exit_code == code
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_sigterm_runs_the_sigint_handler_a_library_installed() -> None:
    # Ray Tune replaces the SIGINT handler while a sweep runs: on Ctrl-C it stops the trials and
    # saves the sweep's state for --resume, and SIGTERM must do the same, not raise.
    stopped: list[int] = []
    with stop_on_signals() as interruption:
        ours = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, lambda signum, frame: stopped.append(signum))
        _deliver(signal.SIGTERM)
        signal.signal(signal.SIGINT, ours)
    assert stopped == [signal.SIGINT]
    assert interruption.exit_code == 143


def test_ctrl_c_that_tune_handled_exits_as_sigint() -> None:
    # Tune's own SIGINT handler took the signal, so this module never saw it.
    with stop_on_signals() as interruption:
        pass
    assert interruption.signum is None and interruption.exit_code == 130
