"""Every command's help reads as a command line's help, and its examples work as printed.

- No Python type labels (`<bool>`, `<str>`, `<int range>`, `<list[str]>`, `<path>`): each value
  is named by a metavar (FILE, RUN, N, [center|ten_crop|multi_scale]) and flags by nothing.
- Help text is shown as written: rich markup swallows nothing (`resnetctl[export]`).
- Usage lines name arguments as FILE or [FILE], and the command as `resnetctl`.
- In every command list, each command's summary fits on one line of an 80-column terminal.
- An example line (`resnetctl ...` in a command's help) without a trailing `# ...` comment runs
  as printed, from a folder holding the repository's jobs/ and cluster/, and exits 0; one with
  a comment (`# needs: cluster`, `# trains, ...`) says why it is not run here, and is parsed:
  its command and options exist and its values convert.
"""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from resnetctl.cli.app import app
from tests.conftest import ROOT

TYPE_LABEL = re.compile(r"<[A-Za-z_][\w \[\],|.]*>")
EXAMPLE = re.compile(r"^\s*(?:Example:\s*)?(resnetctl\s.*)$", re.MULTILINE)


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _commands() -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group of the CLI, with its path below `resnetctl`."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(path: tuple[str, ...], command: Any) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk((*path, name), sub)

    walk((), typer.main.get_command(app))
    return found


COMMANDS = _commands()
IDS = [" ".join(path) or "resnetctl" for path, _ in COMMANDS]


def _help(path: tuple[str, ...], columns: int = 100) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(columns)})
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("path, command", COMMANDS, ids=IDS)
def test_help_names_values_by_metavars_and_keeps_its_text(
    path: tuple[str, ...], command: Any
) -> None:
    text = _help(path)
    assert not TYPE_LABEL.findall(text), TYPE_LABEL.findall(text)
    usage = next(line for line in text.splitlines() if "Usage:" in line)
    assert f"Usage: {' '.join(('resnetctl', *path))} " in usage
    assert "{" not in usage, usage
    # Every bracketed word of the help text survives rendering (rich markup would eat it).
    for param in command.params:
        for word in re.findall(r"\[[a-z]\w*\]", getattr(param, "help", "") or ""):
            assert word in text.replace("\n", " "), word
    for word in re.findall(r"\[[a-z]\w*\]", command.help or ""):
        assert word in text, word


def test_the_export_extra_is_printed_whole() -> None:
    assert "pip install 'resnetctl[export]'" in _help(("export",))


@pytest.mark.parametrize(
    "path", [p for p, c in COMMANDS if _is_group(c)], ids=lambda p: " ".join(p) or "resnetctl"
)
def test_every_summary_fits_one_line_of_a_command_list(path: tuple[str, ...]) -> None:
    text = _help(path, columns=80)
    panel = text.split("─ Commands ─", 1)[1].split("╰", 1)[0]
    rows = [line for line in panel.splitlines()[1:] if line.startswith("│")]
    continued = [row for row in rows if re.match(r"│\s{3,}\S", row)]
    assert rows and not continued, "\n".join(rows)


def _examples() -> list[tuple[str, str, str]]:
    """(command path, example, comment) of every example line in every command's help."""
    found = []
    for path, command in COMMANDS:
        for line in EXAMPLE.findall(command.help or ""):
            example, _, comment = line.partition("  # ")
            found.append((" ".join(path), example.strip(), comment.strip()))
    return found


EXAMPLES = _examples()
RUNNABLE = [(p, e) for p, e, comment in EXAMPLES if not comment]
PARSED = [(p, e, c) for p, e, c in EXAMPLES if c]


def test_the_examples_are_many_and_most_commands_have_some() -> None:
    assert len(RUNNABLE) >= 8 and len(PARSED) >= 15
    with_examples = {p for p, _, _ in EXAMPLES}
    leaves = {" ".join(p) for p, c in COMMANDS if not _is_group(c)}
    assert len(with_examples & leaves) >= len(leaves) - 2, sorted(leaves - with_examples)


@pytest.fixture
def repository_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with the repository's jobs/ and cluster/, as a user's checkout."""
    for name in ("jobs", "cluster"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    # The paper's jobs read their data roots from these; a help example never reads the data.
    monkeypatch.setenv("RESNETCTL_IMAGENET", str(tmp_path / "imagenet"))
    monkeypatch.setenv("RESNETCTL_CIFAR10", str(tmp_path / "cifar10"))
    return tmp_path


def _words(example: str, folder: Path) -> list[str]:
    """The example's arguments after `resnetctl`, with globs expanded as a shell would."""
    words = []
    for word in shlex.split(example)[1:]:
        matches = sorted(glob.glob(word, root_dir=folder)) if "*" in word else []
        words += matches or [word]
    return words


@pytest.mark.parametrize("path, example", RUNNABLE, ids=[e for _, e in RUNNABLE])
def test_an_example_without_a_comment_runs_as_printed(
    path: str, example: str, repository_folder: Path
) -> None:
    result = CliRunner().invoke(app, _words(example, repository_folder), env={"COLUMNS": "120"})
    assert result.exit_code == 0, f"{example}\n{result.stdout}\n{result.stderr}"


@pytest.mark.parametrize("path, example, why", PARSED, ids=[e for _, e, _ in PARSED])
def test_an_example_that_needs_more_than_this_machine_parses(
    path: str, example: str, why: str, repository_folder: Path
) -> None:
    assert re.match(r"(needs: \S|trains|serves)", why), f"say why it is not run: {why!r}"
    words = _words(example, repository_folder)
    command = typer.main.get_command(app)
    while _is_group(command):
        name, words = words[0], words[1:]
        sub = command.commands.get(name)
        assert sub is not None, f"{example}: no command {name!r}"
        command = sub
    try:
        command.make_context(command.name, list(words))
    except Exception as exc:  # Typer's own click: its UsageError, BadParameter, NoSuchOption
        pytest.fail(f"{example}: {getattr(exc, 'format_message', exc.__str__)()}")


@pytest.mark.parametrize(
    "path", [p for p, c in COMMANDS if not _is_group(c)], ids=lambda p: " ".join(p)
)
def test_every_command_says_what_it_exits_with(path: tuple[str, ...]) -> None:
    text = " ".join(_help(path).split())
    assert "Exit codes: 0 " in text and " 2 " in text.split("Exit codes:", 1)[1]
