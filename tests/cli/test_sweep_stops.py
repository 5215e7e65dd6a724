"""`tune` and `reproduce` plan, announce and stop a sweep the same way: a stop exits 130 (SIGINT)
or 143 (SIGTERM) with the command that continues it. The sweep itself is replaced here (the
end-to-end stop and resume of a real sweep is in tests/tune/test_sweep.py); planning is real."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from resnetctl.reproduce import ExperimentReport

COMMANDS = {
    # command line -> (the function its sweep runs in, the command that continues it)
    "tune --depths 20,56": ("resnetctl.tune.run_sweep", "resnetctl tune --resume stops"),
    "reproduce shortcuts": (
        "resnetctl.reproduce.run_experiment",
        "resnetctl reproduce shortcuts --resume stops",
    ),
}


def _interrupted_report(experiment: Any, record: Any, **_: Any) -> ExperimentReport:
    """What `run_experiment` returns when Tune took a Ctrl-C: a sweep with nothing finished."""
    return ExperimentReport(
        kind=experiment.kind,
        sweep=record.name,
        parent_run_id="0" * 32,
        parent_url="http://127.0.0.1:1/#/runs",
        tracking_uri="sqlite:///unused.db",
        nets=[],
        verdicts=[],
        notes=[],
        interrupted=True,
        seconds=1.0,
    )


@pytest.fixture
def sigterm_fails_the_test() -> Iterator[None]:
    """A SIGTERM that the command under test did not take fails the test instead of ending
    pytest."""

    def reached_the_test(signum: int, frame: Any) -> None:
        raise AssertionError("SIGTERM reached the test: the command did not take it")

    previous = signal.signal(signal.SIGTERM, reached_the_test)
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("sigterm_fails_the_test")
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_stop_outside_tunes_handler_exits_with_the_way_to_continue(
    cli, monkeypatch: pytest.MonkeyPatch, command: str, signum: int, code: int
) -> None:
    target, hint = COMMANDS[command]

    def stopped(*args: Any, **kwargs: Any) -> None:
        os.kill(os.getpid(), signum)
        time.sleep(0.2)  # the handler runs in the main thread at the next bytecode boundary
        raise AssertionError("the signal did not stop the sweep")

    monkeypatch.setattr(target, stopped)
    outcome = cli(*command.split(), "--name", "stops")
    assert outcome.code == code
    assert f"interrupted: continue with `{hint}`" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_reproduce_announces_its_nets_and_continues_a_sweep_tune_stopped(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("resnetctl.reproduce.run_experiment", _interrupted_report)
    outcome = cli("reproduce", "shortcuts", "--name", "stops", "--no-analyze")
    # Tune's own handler took the Ctrl-C: the run returned, marked interrupted.
    assert outcome.code == 130
    assert "shortcuts: sweep stops: 4 nets, up to " in outcome.stderr
    assert "shortcuts (sweep stops; errors in %, per epoch)" in outcome.stdout
    assert "interrupted: continue with `resnetctl reproduce shortcuts --resume stops`" in (
        outcome.stderr
    )
    assert "error:" not in outcome.stderr


def test_tune_announces_its_trials_scheduler_and_metric(
    cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: Any, **kwargs: Any) -> None:
        from resnetctl.tune import SweepError

        raise SweepError("the tracking server is not reachable")

    monkeypatch.setattr("resnetctl.tune.run_sweep", refused)
    outcome = cli("tune", "--depths", "20,56", "--scheduler", "fifo", "--name", "stops")
    assert outcome.code == 2
    assert "sweep stops: 2 trial(s), fifo, val_top1_error_pct (min), up to " in outcome.stderr
    assert "error: the tracking server is not reachable" in outcome.stderr
