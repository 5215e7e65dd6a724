"""`data inspect` and `data pack` list the files they left out the same way: a count, then the
first rows with their reasons, then how many more the JSON holds."""

from __future__ import annotations

import io

from rich.console import Console

from resnetctl.cli.data import _MAX_ROWS, _print_files


def render(files: list[dict[str, str]]) -> list[str]:
    buffer = io.StringIO()
    _print_files(Console(file=buffer, width=200, color_system=None), "left out", files)
    return buffer.getvalue().splitlines()


def test_a_long_list_is_cut_after_the_first_rows_and_says_how_many_more():
    files = [{"path": f"cat/{i}.png", "reason": "[empty] file"} for i in range(_MAX_ROWS + 5)]
    lines = render(files)
    assert lines[0] == f"{_MAX_ROWS + 5} file(s) left out:"
    # The reason is printed as written: brackets are not taken for rich markup.
    assert lines[1:-1] == [f"  cat/{i}.png: [empty] file" for i in range(_MAX_ROWS)]
    assert lines[-1] == "  ... 5 more (see --json)"


def test_nothing_left_out_prints_nothing():
    assert render([]) == []
