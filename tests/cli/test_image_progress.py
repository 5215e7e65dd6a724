"""The image bars of `eval`, `analyze` and `predict`: drawn on a terminal, absent without one."""

from __future__ import annotations

import io

from rich.console import Console

from resnetctl.cli.image_progress import ImageBars


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=120), buffer


def test_a_terminal_gets_a_bar_of_images_with_their_rate() -> None:
    console, buffer = _console(terminal=True)
    with ImageBars(console) as bars:
        bars.status("starting 2 CPU workers")
        bars.progress.refresh()
        assert "starting 2 CPU workers" in buffer.getvalue()
        bars.update("center", 3, 8)
        advance = bars.counter("ten_crop", 8)
        advance(4)
        bars.progress.refresh()
        drawn = buffer.getvalue()
    assert "center" in drawn and "3/8" in drawn
    assert "ten_crop" in drawn and "4/8" in drawn
    assert "img/s" in drawn
    # The start-up line gave way to the bars.
    assert [task.description for task in bars.progress.tasks] == ["center", "ten_crop"]


def test_no_terminal_or_json_gets_no_bar() -> None:
    for terminal, enabled in ((False, True), (True, False)):
        console, buffer = _console(terminal)
        with ImageBars(console, enabled=enabled) as bars:
            bars.update("center", 3, 8)
            bars.progress.refresh()
        assert buffer.getvalue() == ""
