"""`resnetctl models`: the registry as a table."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from resnetctl.cli.common import JsonOption, fail, out, print_json
from resnetctl.units import human


def models(
    family: Annotated[
        str | None,
        typer.Option(metavar="[imagenet|cifar]", help="Only the models of this family."),
    ] = None,
    json_: JsonOption = False,
) -> None:
    """List the models: family, depth, block, shortcut and size.

    Parameters and multiply-adds at the family's input size (224x224 for imagenet, 32x32 for
    cifar).

    Examples:

      resnetctl models

      resnetctl models --family cifar --json

    Exit codes: 0 listed, 2 an unknown family.
    """
    from resnetctl.models import describe, list_models

    if family not in (None, "imagenet", "cifar"):
        fail(f"--family {family!r}: expected imagenet or cifar")
    rows = [describe(name) for name in list_models(family)]
    if json_:
        print_json(rows)
        return
    table = Table(title="resnetctl models")
    for column in ("name", "family", "depth", "block", "shortcut", "params", "mult-adds", "input"):
        numeric = column in ("depth", "params", "mult-adds")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(
            row["name"],
            row["family"],
            str(row["depth"]),
            row["block"],
            str(row["shortcut"]),
            human(row["params"]),
            human(row["macs"]),
            f"{row['input_size']}x{row['input_size']}",
        )
    out.print(table)
