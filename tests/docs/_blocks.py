"""The fenced shell blocks of README.md and docs/*.md, as the docs tests read them.

A block is run by tests/docs/test_walkthroughs.py unless the line before its fence carries a
visible marker saying why a CPU machine cannot (or the docs test should not) run it:

    <!-- needs: cloud -->           a cloud account, a cluster or a bucket
    <!-- needs: gpu -->             CUDA devices
    <!-- needs: imagenet -->        ImageNet (or another data set that is not bundled)
    <!-- needs: time (about 16 min on 2 cores) -->
                                    runs on a CPU, for longer than the docs test may take; run
                                    with RESNETCTL_DOCS_ALL=1 to include it
    <!-- serves -->                 serves until Ctrl-C: started, its URL fetched, then Ctrl-C
    <!-- tested-by: PATH -->        run by the test at PATH (a fixed port, a machine-wide name)

A marked block is still parsed: its shell syntax, each `resnetctl` command against the CLI
(commands, options, values), and every `jobs/*.yaml` and `cluster/*.yaml` it names, validated.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"bash", "sh", "shell", "console"}
NEEDS = ("cloud", "gpu", "imagenet", "time")
_FENCE = re.compile(r"^(\s*)(```+)(\S*)\s*$")
_MARKER = re.compile(r"^<!--\s*(needs:\s*(\w+)[^>]*?|serves|tested-by:\s*(\S+))\s*-->\s*$")
# A bare fence whose first line looks like a command should say it is one.
_COMMAND_LIKE = re.compile(r"^\s*(\$ |\.venv/bin/|resnetctl |python |make |ray |kubectl |pip )")


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    marker: str | None  # the marker comment's content, e.g. "needs: cloud"
    needs: str | None  # cloud, gpu, imagenet, time
    tested_by: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL

    @property
    def serves(self) -> bool:
        return self.marker == "serves"

    def script(self) -> str:
        """The shell text: a console block's `$ ` lines (and their continuations) only."""
        if self.lang != "console":
            return self.text
        lines, keep = [], False
        for line in self.text.splitlines():
            if line.startswith("$ "):
                lines.append(line[2:])
                keep = line.endswith("\\")
            elif keep:
                lines.append(line)
                keep = line.endswith("\\")
        return "\n".join(lines) + "\n"

    def commands(self) -> list[list[str]]:
        """Each simple command of the script as words (comments dropped, continuations
        joined), split at `;`, `&&`, `||`, `|` and `&`; here-documents left out."""
        text = re.sub(r"\\\n", " ", self.script())
        text = re.sub(r"<<-?\s*'?(\w+)'?\n.*?\n\1\n", "\n", text, flags=re.S)
        found = []
        for line in text.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            try:
                words = list(lexer)
            except ValueError:  # an unbalanced quote: bash -n reports it
                continue
            current: list[str] = []
            for word in [*words, ";"]:
                if word and set(word) <= set(";&|"):
                    if current:
                        found.append(current)
                    current = []
                else:
                    current.append(word)
        return found


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of `page`, in order, with the marker on the line before each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence, lang = opening.groups()
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            end += 1
        previous = lines[index - 1].strip() if index > 0 else ""
        marker = _MARKER.match(previous)
        # A block inside a list item is indented with it; its text is not.
        body = [
            line[len(indent) :] if line.startswith(indent) else line
            for line in lines[index + 1 : end]
        ]
        found.append(
            Block(
                page=page,
                line=index + 1,
                lang=lang.lower(),
                text="\n".join(body) + "\n",
                marker=marker.group(1).strip() if marker else None,
                needs=marker.group(2) if marker else None,
                tested_by=marker.group(3) if marker else None,
            )
        )
        index = end + 1
    return found


def unlabelled_commands(block: Block) -> bool:
    """Whether a block without a language holds commands (it should be labelled `bash`)."""
    first = next((line for line in block.text.splitlines() if line.strip()), "")
    return not block.lang and bool(_COMMAND_LIKE.match(first))


def resnetctl_words(command: list[str]) -> list[str] | None:
    """The arguments after `resnetctl` in a simple command (after `VAR=value` prefixes,
    `.venv/bin/`), or None when the command is not resnetctl's."""
    words = list(command)
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    if words and words[0] in ("resnetctl", ".venv/bin/resnetctl"):
        return words[1:]
    return None


def parse_cli(words: list[str]) -> str | None:
    """Parse `resnetctl WORDS` against the CLI without running it: None when the command and
    its options exist and its values convert, else what is wrong."""
    import typer

    from resnetctl.cli.app import app

    command: Any = typer.main.get_command(app)
    rest = list(words)
    while hasattr(command, "commands"):
        if not rest:
            return "no command given"
        name, rest = rest[0], rest[1:]
        if name in ("-h", "--help", "--version"):
            return None
        command = command.commands.get(name)
        if command is None:
            return f"no command {name!r}"
    try:
        command.make_context(command.name, rest)
    except Exception as exc:  # Typer's own click: UsageError, BadParameter, NoSuchOption
        return str(getattr(exc, "format_message", exc.__str__)())
    return None


def named_files(block: Block) -> list[Path]:
    """The job specs and cluster configs of the repository a block names."""
    names = re.findall(r"\b((?:jobs|cluster)/[\w.*-]+\.yaml)\b", block.script())
    found: list[Path] = []
    for name in names:
        found += sorted(ROOT.glob(name)) if "*" in name else [ROOT / name]
    return found
