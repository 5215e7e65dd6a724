"""What every command shares: the two consoles, exit codes, option aliases, spec loading."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

# Data goes to stdout; logs, progress and errors to stderr, so `--json | jq` always works.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
if not out.is_terminal:  # piped tables would otherwise be cut to 80 columns
    out.width = max(out.width, 132)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
#: The default differs by command (what its forward passes hold in memory).
BatchSizeOption = Annotated[
    int, typer.Option("--batch-size", min=1, metavar="N", help="Images per forward pass.")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a spec field by dotted path, e.g. --set train.epochs=1 (repeatable).",
    ),
]
StorageOption = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="PATH|URI",
        help="Run storage: a path or a bucket URI such as s3://bucket/runs "
        "(default: $RESNETCTL_STORAGE, else .resnetctl/runs).",
    ),
]


def use_storage(storage: str | None) -> None:
    """Make `--storage` the storage root of this process and of every Ray worker it starts
    (they read $RESNETCTL_STORAGE through `resnetctl.storage.storage_root`)."""
    import os

    if storage:
        os.environ["RESNETCTL_STORAGE"] = storage


SpecFile = Annotated[
    Path, typer.Argument(metavar="FILE", help="Job spec YAML file.", show_default=False)
]


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an error on stderr and exit with `code` (2: usage or spec error, 1: job failed)."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def spec_errors() -> Iterator[None]:
    """Turn `SpecError`s into one stderr line per issue and exit code 2."""
    from resnetctl.spec import SpecError

    try:
        yield
    except SpecError as exc:
        report_issues(exc)
        raise typer.Exit(EXIT_USAGE) from None


def report_issues(exc: Exception) -> None:
    """One stderr line per issue of a `SpecError` (or the exception's text)."""
    for issue in getattr(exc, "issues", [exc]):
        err.print(f"[bold red]error:[/] {escape(str(issue))}", highlight=False)


def load_spec_to_plan(file: Path, overrides: list[str]) -> Any:
    """Load a spec for a command that plans or checks it without running it here: an unset
    `${VAR}` (a data path only the cluster has) is a warning line, not an error."""
    from resnetctl.spec import SpecIssue, load_spec

    warnings: list[SpecIssue] = []
    spec = load_spec(file, overrides, warnings=warnings)
    for issue in warnings:
        err.print(f"[bold yellow]warning:[/] {escape(str(issue))}", highlight=False)
    return spec


@contextmanager
def ray_output_on_stderr() -> Iterator[None]:
    """Send what Ray prints on stdout (worker and raylet logs) to stderr while a job or sweep
    runs, so that stdout holds only the command's result (and `--json | jq` works)."""
    with redirect_stdout(sys.stderr):
        yield


def show_deprecations() -> None:
    """Print resnetctl's own deprecation warnings (a metric named by its old name, ...) as
    `warning:` lines on stderr, every time, instead of Python's file-and-line form."""
    import warnings

    warnings.filterwarnings("always", category=FutureWarning, module=r"resnetctl\.")
    previous = warnings.showwarning
    if getattr(previous, "resnetctl", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        if issubclass(category, FutureWarning) and category.__module__.startswith("resnetctl."):
            err.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False)
        else:
            previous(message, category, filename, lineno, file, line)

    show.resnetctl = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def print_json(payload: Any) -> None:
    """Write JSON on stdout (no rich markup or wrapping)."""
    sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    sys.stdout.flush()
