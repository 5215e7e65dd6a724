"""What `tune` and `reproduce` share: the options that name a sweep and bound how many trials run
at once, finding the sweep `--resume` continues, the lines that announce a planned sweep, and
running it with Ctrl-C and SIGTERM turned into a stop that `--resume` can continue."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from resnetctl.cli.common import err, fail, ray_output_on_stderr

if TYPE_CHECKING:
    from resnetctl.tune import SweepRecord

T = TypeVar("T")

NameOption = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="Sweep name (default: JOB-tune-TIME, in UTC)."),
]
MaxConcurrentOption = Annotated[
    int | None,
    typer.Option(
        "--max-concurrent",
        min=1,
        metavar="N",
        help="Trials (nets) trained at once; default: as many as the CPUs (GPUs) hold.",
    ),
]


def resumed_sweep(name: str, refused: Sequence[str] = ()) -> SweepRecord:
    """The record of the sweep `name` to continue. Exits 2 if there is none, or if the user gave
    any of `refused`: flags that would change a sweep that continues as it was launched."""
    from resnetctl.tune import SweepError, load_sweep

    if refused:
        fail(f"--resume continues a sweep as it was launched; drop {', '.join(refused)}")
    try:
        return load_sweep(name)
    except SweepError as exc:
        fail(str(exc))


def announce(record: SweepRecord, *details: str, lead: str = "", trials: str = "trial(s)") -> None:
    """The sweep's notes, then one line: `lead`, its name, how many `trials`, `details` and how
    many run at once."""
    for note in record.notes:
        err.print(f"[bold]note:[/] {escape(note)}", highlight=False)
    parts = [
        f"{record.space.size(record.samples)} {trials}",
        *details,
        f"up to {record.max_concurrent or 'auto'} at once",
    ]
    err.print(
        f"{escape(lead)}sweep [bold]{escape(record.name)}[/]: {escape(', '.join(parts))}",
        highlight=False,
    )


def continue_with(command: str, name: str) -> None:
    """Tell how to continue the stopped sweep `name` of `resnetctl COMMAND`."""
    err.print(
        f"[bold yellow]interrupted:[/] continue with "
        f"`resnetctl {escape(command)} --resume {escape(name)}`",
        highlight=False,
    )


def run_stoppable(run: Callable[[], T], command: str, name: str) -> tuple[T, int]:
    """`run()`, a sweep, with Ray's output on stderr and SIGINT and SIGTERM taking Ray Tune's
    stop (the sweep keeps its state for `--resume`); what it returned and the exit code a stop
    calls for. A `SweepError` exits 2; a second signal, or one outside Tune's run, exits at once
    with the way to continue."""
    from resnetctl.cli.interrupt import stop_on_signals
    from resnetctl.tune import SweepError

    with stop_on_signals() as interruption:
        try:
            with ray_output_on_stderr():
                result = run()
        except SweepError as exc:
            fail(str(exc))
        except KeyboardInterrupt:
            # A second signal, or one outside Tune's run: Tune's own handler takes the first.
            continue_with(command, name)
            raise typer.Exit(interruption.exit_code) from None
    return result, interruption.exit_code
