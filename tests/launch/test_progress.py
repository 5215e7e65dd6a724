"""The driver's progress view: a line per finished epoch on a terminal and off it, a live bar
only on a terminal, and never a control code without one."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from resnetctl.launch.progress import EPOCH_EVENT, WORKER_ERROR_EVENT, ProgressView, clock

EPOCH_LINE = re.compile(
    r"^epoch (\d+)/(\d+)  train error (\d+\.\d\d)%  val error (\d+\.\d\d)%  (\d+) img/s  "
    r"\d+s  \d+s left$"
)


def _feed(view: ProgressView, epochs: int, steps: int = 4) -> None:
    for epoch in range(1, epochs + 1):
        for step in range(1, steps + 1):
            view.update(
                {"epoch": epoch, "step": step, "steps": steps, "images_per_second": 50.0 + step}
            )
        view.update(
            {
                "kind": EPOCH_EVENT,
                "epoch": epoch,
                "train_top1_error": 50.0 / epoch,
                "val_top1_error": 40.0 / epoch,
                "images_per_second": 812.4,
            }
        )


def test_without_a_terminal_only_the_epoch_lines_are_written_and_no_control_codes() -> None:
    stream = io.StringIO()
    with ProgressView((3, "epoch"), Console(file=stream, width=60)) as view:
        _feed(view, 3)
    lines = stream.getvalue().splitlines()
    assert "\x1b" not in stream.getvalue()
    assert [EPOCH_LINE.match(line).groups() for line in lines] == [  # type: ignore[union-attr]
        ("1", "3", "50.00", "40.00", "812"),
        ("2", "3", "25.00", "20.00", "812"),
        ("3", "3", "16.67", "13.33", "812"),
    ]


def test_on_a_terminal_the_bar_is_drawn_and_each_epoch_line_printed_once() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120)
    with ProgressView((2, "epoch"), console) as view:
        _feed(view, 2)
    text = stream.getvalue()
    plain = re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]", "", text)
    assert "━" in plain and "img/s  loss" in plain  # the live bar was drawn
    for epoch in (1, 2):
        found = re.findall(
            rf"^epoch {epoch}/2  train error .* left$", plain.replace("\r", "\n"), re.M
        )
        assert len(found) == 1, plain


def test_json_mode_on_a_terminal_gets_the_plain_lines() -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=True, width=120)
    with ProgressView((1, "epoch"), console, live=False) as view:
        _feed(view, 1)
    assert EPOCH_LINE.match(stream.getvalue().strip())


def test_a_worker_failure_is_one_line_however_often_it_is_reported() -> None:
    stream = io.StringIO()
    error = {"kind": WORKER_ERROR_EVENT, "ranks": [1], "error": "ActorDiedError: it died"}
    with ProgressView((2, "epoch"), Console(file=stream, width=60)) as view:
        _feed(view, 1)
        view.update(error)
        view.update(error)
        _feed(view, 1)  # the restarted group trains again
        view.update({**error, "ranks": [0, 1]})
    lines = stream.getvalue().splitlines()
    assert lines[1] == "worker failed (rank 1): ActorDiedError: it died"
    assert lines[3] == "workers failed (ranks 0, 1): ActorDiedError: it died"
    assert len(lines) == 4


def test_epochs_of_a_run_in_iterations_come_from_the_steps_of_one_epoch() -> None:
    view = ProgressView((10, "iteration"), Console(file=io.StringIO()))
    assert view.total_epochs() is None
    view.update({"epoch": 1, "step": 1, "steps": 4})
    assert view.total_epochs() == 3  # 4 + 4 + a partial 2


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (3720, "1h02m")]
)
def test_clock(seconds: float, text: str) -> None:
    assert clock(seconds) == text
