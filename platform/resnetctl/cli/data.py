"""`resnetctl data ...`: look at data sets before training on them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from resnetctl.cli.common import EXIT_JOB_FAILED, JsonOption, fail, out, print_json

if TYPE_CHECKING:  # the data package loads DALI and torch: only when a command runs
    from resnetctl.data.inspect import InspectReport

app = typer.Typer(help="Inspect data sets (image folders in ImageNet's layout).")

_MAX_ROWS = 20


@app.callback()
def _data() -> None:
    """Inspect data sets (image folders in ImageNet's layout)."""


def _render(report: InspectReport, console: Console) -> None:
    splits = Table(title=f"{escape(report.root)}: {len(report.classes)} classes")
    for column in ("split", "folder", "classes", "images", "unreadable"):
        splits.add_column(column, justify="right" if column in ("images", "unreadable") else "left")
    for s in report.splits:
        splits.add_row(
            escape(s.name),
            escape(s.directory),
            str(len(s.per_class)),
            str(s.images),
            str(len(s.unreadable)),
        )
    console.print(splits)

    per_class = Table(title="images per class")
    per_class.add_column("class")
    for s in report.splits:
        per_class.add_column(escape(s.name), justify="right")
    for cls in report.classes[:_MAX_ROWS]:
        per_class.add_row(escape(cls), *(str(s.per_class.get(cls, "-")) for s in report.splits))
    if len(report.classes) > _MAX_ROWS:
        more = f"... {len(report.classes) - _MAX_ROWS} more"
        per_class.add_row(more, *("" for _ in report.splits))
    console.print(per_class)

    if report.image_size:
        h, w = report.image_size["height"], report.image_size["width"]
        console.print(
            f"image size over {report.image_size['sampled']} sampled images (H x W): "
            f"min {h['min']} x {w['min']}, median {h['median']:g} x {w['median']:g}, "
            f"max {h['max']} x {w['max']}"
        )
    unreadable = [u for s in report.splits for u in s.unreadable]
    if unreadable:
        console.print(f"[yellow]{len(unreadable)} file(s) skipped:[/yellow]")
        for u in unreadable[:_MAX_ROWS]:
            console.print(f"  {u['path']}: {u['reason']}", markup=False, highlight=False)
        if len(unreadable) > _MAX_ROWS:
            console.print(f"  ... {len(unreadable) - _MAX_ROWS} more (see --json)")
    for problem in report.problems:
        console.print(f"[red]problem:[/red] {escape(problem)}", highlight=False)


@app.command("inspect")
def inspect_command(
    path: Annotated[
        str,
        typer.Argument(
            metavar="PATH",
            help="Data root (with train/ and val/) or a split: a folder or s3://bucket/prefix.",
            show_default=False,
        ),
    ],
    json_output: JsonOption = False,
    sample: Annotated[
        int,
        typer.Option(min=0, metavar="N", help="Images whose size is read for the size summary."),
    ] = 200,
) -> None:
    """Classes, images per split and class, image sizes, unreadable files.

    Example: resnetctl data inspect /data/imagenet --json  # needs: a data set

    Exit codes: 0 the folder can be trained on, 1 it has problems (listed), 2 PATH does not
    exist.
    """
    from resnetctl.data.imagefolder import DataError
    from resnetctl.data.inspect import inspect_dataset

    try:
        report = inspect_dataset(path, sample=sample)
    except DataError as exc:
        fail(str(exc))
    if json_output:
        print_json(report.to_dict())
    else:
        _render(report, out)
    if not report.usable:
        raise typer.Exit(EXIT_JOB_FAILED)
