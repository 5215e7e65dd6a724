"""`resnetctl reproduce degradation|shortcuts`: the paper's comparisons, each one Ray Tune sweep
with an MLflow parent run that receives the table of final errors and the figures."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from resnetctl.cli._sweep import (
    MaxConcurrentOption,
    NameOption,
    announce,
    continue_with,
    resumed_sweep,
    run_stoppable,
)
from resnetctl.cli.common import (
    EXIT_JOB_FAILED,
    JsonOption,
    SetOption,
    err,
    print_json,
    spec_errors,
)

app = typer.Typer(
    name="reproduce",
    help="Reproduce the paper's Fig. 6 and Table 3.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

DataOption = Annotated[
    Path | None,
    typer.Option(
        "--data",
        metavar="PATH",
        help="CIFAR-10 as image folders (train/CLASS/*, val/CLASS/*): the paper's CIFAR "
        "recipe (64k iterations, batch 128). Default: the bundled digits, 20 epochs on CPU.",
    ),
]
EpochsOption = Annotated[
    int | None,
    typer.Option(
        "--epochs",
        min=1,
        metavar="N",
        help="Training length of every net; the lr drops at 50% and 75% of it, as the paper's.",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", metavar="DIR", help="Also write the table and figures into DIR."),
]
ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume",
        metavar="NAME",
        help="Continue the interrupted sweep NAME (finished nets stay), then write the table "
        "and figures; other options are ignored.",
    ),
]
AnalyzeOption = Annotated[
    bool,
    typer.Option(
        "--analyze/--no-analyze",
        help="Also measure every trained net's layer responses (Fig. 7) on the validation data.",
    ),
]


@app.command("degradation")
def degradation(
    data: DataOption = None,
    depths: Annotated[
        str,
        typer.Option("--depths", metavar="D,D,...", help="CIFAR depths (6n+2) to compare."),
    ] = "20,56",
    variants: Annotated[
        str,
        typer.Option(
            "--variants", metavar="plain,residual", help="Which panels of Fig. 6 to train."
        ),
    ] = "plain,residual",
    epochs: EpochsOption = None,
    overrides: SetOption = None,
    name: NameOption = None,
    max_concurrent: MaxConcurrentOption = None,
    out_dir: OutOption = None,
    analyze: AnalyzeOption = True,
    resume: ResumeOption = None,
    json_: JsonOption = False,
) -> None:
    """Fig. 6: plain nets degrade with depth, ResNets do not.

    Plain nets and ResNets (option A) of each depth, trained with one recipe and one budget;
    training error (dashed) and test error (solid) per epoch, and the final errors.

    Examples:

      resnetctl reproduce degradation  # trains, about 16 min on 2 cores

      resnetctl reproduce degradation --depths 20,56,110 --epochs 30  # trains, hours

      resnetctl reproduce degradation --data /data/cifar10 --depths 20,32,44,56  # needs: gpu

    Exit codes: 0 every net trained, 1 some did not (the table is partial), 2 a bad option,
    130/143 stopped by Ctrl-C/SIGTERM (`--resume NAME` continues it).
    """
    from resnetctl.reproduce import experiments

    with spec_errors():
        experiment = experiments.degradation(
            data=data,
            depths=depths,
            epochs=epochs,
            overrides=list(overrides or []),
            name=name,
            max_concurrent=max_concurrent,
            variants=variants,
        )
    _run(experiment, out_dir, analyze, json_, resume)


@app.command("shortcuts")
def shortcuts(
    data: DataOption = None,
    depth: Annotated[int, typer.Option("--depth", metavar="N", help="CIFAR depth (6n+2).")] = 20,
    epochs: EpochsOption = None,
    overrides: SetOption = None,
    name: NameOption = None,
    max_concurrent: MaxConcurrentOption = None,
    out_dir: OutOption = None,
    analyze: AnalyzeOption = True,
    resume: ResumeOption = None,
    json_: JsonOption = False,
) -> None:
    """Table 3: shortcut options A, B and C against the plain net.

    A zero-pads, B projects where the shape changes, C projects everywhere; every net with one
    recipe and budget.

    Examples:

      resnetctl reproduce shortcuts  # trains, about 15 min on 2 cores

      resnetctl reproduce shortcuts --depth 32 --epochs 30  # trains, hours

    Exit codes: 0 every net trained, 1 some did not (the table is partial), 2 a bad option,
    130/143 stopped by Ctrl-C/SIGTERM (`--resume NAME` continues it).
    """
    from resnetctl.reproduce import experiments

    with spec_errors():
        experiment = experiments.shortcuts(
            data=data,
            depth=depth,
            epochs=epochs,
            overrides=list(overrides or []),
            name=name,
            max_concurrent=max_concurrent,
        )
    _run(experiment, out_dir, analyze, json_, resume)


def _run(
    experiment: Any, out_dir: Path | None, analyze: bool, json_: bool, resume: str | None
) -> None:
    from resnetctl.reproduce import plan, run_experiment

    if resume:
        record = resumed_sweep(resume)
    else:
        with spec_errors():
            record = plan(experiment)
    announce(record, lead=f"{experiment.kind}: ", trials="nets")
    command = f"reproduce {experiment.kind}"
    report, exit_code = run_stoppable(
        lambda: run_experiment(
            experiment, record, out_dir=out_dir, analyze=analyze, resume=bool(resume)
        ),
        command,
        record.name,
    )
    if json_:
        print_json(report.as_dict())
    else:
        _render(report)
    if report.interrupted:
        # The table holds what finished; --resume trains the rest and writes it again.
        continue_with(command, record.name)
        raise typer.Exit(exit_code)
    if any(net.status == "error" for net in report.nets):
        err.print(
            "[bold red]error:[/] some nets did not finish; the table is partial", highlight=False
        )
        raise typer.Exit(EXIT_JOB_FAILED)


def _render(report: Any) -> None:
    from resnetctl.reproduce.results import table_markdown

    sys.stdout.write(f"{report.kind} (sweep {report.sweep}; errors in %, per epoch)\n\n")
    sys.stdout.write(table_markdown(report.nets))
    if report.verdicts:
        sys.stdout.write("\n" + "\n".join(f"- {v}" for v in report.verdicts) + "\n")
    if report.responses_markdown:
        sys.stdout.write("\nstd of the 3x3 layer responses (Fig. 7):\n\n")
        sys.stdout.write(report.responses_markdown)
    sys.stdout.flush()
    err.print(f"mlflow: {escape(report.parent_url)}", highlight=False)
    for path in report.files:
        err.print(f"wrote {escape(str(path))}", highlight=False)
