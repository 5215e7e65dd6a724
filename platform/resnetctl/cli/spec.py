"""`resnetctl validate` and `resnetctl schema`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from resnetctl.cli.common import (
    EXIT_USAGE,
    JsonOption,
    SetOption,
    err,
    fail,
    out,
    print_json,
    report_issues,
)


def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Job spec files.")],
    overrides: SetOption = None,
    json_: JsonOption = False,
) -> None:
    """Check job specs; each error names file:line: field.

    An unset `${VAR}` (a data path only the cluster has) is a warning, not an error: the spec
    is checked all the same, and `submit` refuses it until the variable or a --set gives it.

    Examples:

      resnetctl validate jobs/*.yaml

      resnetctl validate jobs/quickstart.yaml --set train.epochs=1 --json

    Exit codes: 0 all valid, 2 any invalid or unreadable.
    """
    from resnetctl.spec import SpecError, SpecIssue, load_spec

    results = []
    for file in files:
        warnings: list[SpecIssue] = []
        try:
            spec = load_spec(file, overrides or [], warnings=warnings)
        except SpecError as exc:
            results.append(
                {"file": str(file), "valid": False, "errors": [str(i) for i in exc.issues]}
            )
            report_issues(exc)
            continue
        for issue in warnings:
            err.print(f"[bold yellow]warning:[/] {escape(str(issue))}", highlight=False)
        results.append(
            {
                "file": str(file),
                "valid": True,
                "name": spec.name,
                "model": spec.model.name,
                "warnings": [str(i) for i in warnings],
            }
        )
        if not json_:
            out.print(f"[green]ok[/] {file} ({spec.name}: {spec.model.name})", highlight=False)
    if json_:
        print_json(results)
    if not all(r["valid"] for r in results):
        raise typer.Exit(EXIT_USAGE)


def schema(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Write to FILE, not stdout."),
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The field reference (docs/job-spec.md) instead.")
    ] = False,
) -> None:
    """Print the job spec's JSON schema (or its field reference).

    Both are generated from the spec's models; docs/job-spec.schema.json and docs/job-spec.md
    are their output.

    Examples:

      resnetctl schema -o job-spec.schema.json

      resnetctl schema --markdown -o job-spec.md

    Exit codes: 0 written, 2 the output file cannot be written.
    """
    from resnetctl.spec.schema import json_schema_text, markdown_reference

    text = markdown_reference() if markdown else json_schema_text()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail(f"--output {output}: {exc.strerror or exc}")
    err.print(f"wrote {output}", highlight=False)
