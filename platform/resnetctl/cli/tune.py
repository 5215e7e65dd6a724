"""`resnetctl tune`: sweep depth, shortcut option and plain/residual variant (and any spec field)
with Ray Tune; one Ray Train run and one MLflow child run per trial."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

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
    StorageOption,
    err,
    out,
    print_json,
    spec_errors,
    use_storage,
)

if TYPE_CHECKING:
    from resnetctl.tune import SweepOutcome


FileArgument = Annotated[
    Path | None,
    typer.Argument(
        metavar="FILE",
        help="Base job spec YAML; may hold a `search` section. Default: a packaged spec on "
        "the bundled digits (32x32, CIFAR-style input, 2 epochs, 1 CPU worker per trial).",
        show_default=False,
    ),
]

DepthsOption = Annotated[
    str | None,
    typer.Option(
        "--depths",
        metavar="D,D,...",
        help="Depths to compare, in the base spec's family (CIFAR: 6n+2, e.g. 20,56; "
        "ImageNet: 18,34,50,101,152). ImageNet depths against a CIFAR base switch the sweep "
        "to the ImageNet nets on the base's input.",
    ),
]

ShortcutsOption = Annotated[
    str | None,
    typer.Option("--shortcuts", metavar="A,B,C", help="Shortcut options of Table 3."),
]

VariantsOption = Annotated[
    str | None,
    typer.Option("--variants", metavar="residual,plain", help="With and without shortcuts."),
]

SamplesOption = Annotated[
    int,
    typer.Option(
        "--samples",
        min=1,
        metavar="N",
        help="Trials per grid point (random domains are re-drawn).",
    ),
]

SchedulerOption = Annotated[
    str,
    typer.Option(
        "--scheduler", metavar="asha|fifo", help="asha stops weak trials early; fifo never."
    ),
]

MetricOption = Annotated[
    str,
    typer.Option(
        "--metric",
        metavar="METRIC",
        help="Epoch metric that ranks trials, as MLflow names it (errors in percent).",
    ),
]

ModeOption = Annotated[
    str | None,
    typer.Option("--mode", metavar="min|max", help="Default: the metric's own (min for errors)."),
]

GracePeriodOption = Annotated[
    int,
    typer.Option(
        "--grace-period", metavar="EPOCHS", help="ASHA: epochs every trial runs before a stop."
    ),
]

ReductionFactorOption = Annotated[
    float,
    typer.Option(
        "--reduction-factor",
        metavar="F",
        help="ASHA: keep the best 1/F of trials at each rung (2 suits sweeps of a few trials).",
    ),
]

ResumeOption = Annotated[
    str | None,
    typer.Option(
        "--resume", metavar="NAME", help="Continue an interrupted sweep; finished trials stay."
    ),
]

ExportBestOption = Annotated[
    Path | None,
    typer.Option(
        "--export-best",
        metavar="FILE",
        help="Write the best trial's resolved spec as a job YAML for `resnetctl submit`.",
    ),
]


def tune(
    file: FileArgument = None,
    depths: DepthsOption = None,
    shortcuts: ShortcutsOption = None,
    variants: VariantsOption = None,
    overrides: SetOption = None,
    samples: SamplesOption = 1,
    max_concurrent: MaxConcurrentOption = None,
    scheduler: SchedulerOption = "asha",
    metric: MetricOption = "val_top1_error_pct",
    mode: ModeOption = None,
    grace_period: GracePeriodOption = 1,
    reduction_factor: ReductionFactorOption = 2.0,
    name: NameOption = None,
    resume: ResumeOption = None,
    export_best: ExportBestOption = None,
    storage: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Compare networks in a Ray Tune sweep, a training run per trial.

    One Ray Train run and one MLflow child run per trial, under an MLflow parent run; a ranked
    table at the end. A `search` section in FILE searches any spec field by dotted path, e.g.

      search:
        train.base_lr: {loguniform: [0.01, 0.3]}
        train.optimizer.weight_decay: {choice: [0.0001, 0.0005]}

    (kinds: grid, choice, uniform, loguniform).

    Examples:

      resnetctl tune --depths 18,34,50  # trains, about 5 min on 2 cores

      resnetctl tune --depths 20,56 --variants residual,plain --set train.epochs=4  # trains

      resnetctl tune --shortcuts A,B,C --scheduler fifo --json  # trains

      resnetctl tune --resume tune-digits-tune-20261203-120000  # needs: a stopped sweep

      resnetctl tune --depths 20,56 --storage s3://bucket/sweeps  # needs: a bucket

    Exit codes: 0 the sweep ran, 1 no trial reported the metric, 2 a bad spec, option or
    sweep name, 130/143 stopped by Ctrl-C/SIGTERM (--resume NAME continues it).
    """
    from resnetctl.tune import SweepRequest, plan_sweep, run_sweep
    from resnetctl.tune.results import best_spec_yaml

    use_storage(storage)
    if resume:
        given = {"FILE": file, "--depths": depths, "--shortcuts": shortcuts,
                 "--variants": variants, "--set": overrides, "--name": name}  # fmt: skip
        record = resumed_sweep(resume, [flag for flag, value in given.items() if value])
    else:
        request = SweepRequest(
            file=file,
            overrides=list(overrides or []),
            depths=depths,
            shortcuts=shortcuts,
            variants=variants,
            samples=samples,
            max_concurrent=max_concurrent,
            scheduler=scheduler.lower(),
            metric=metric,
            mode=mode.lower() if mode else None,
            grace_period=grace_period,
            reduction_factor=reduction_factor,
            name=name,
        )
        with spec_errors():
            record = plan_sweep(request)
    from resnetctl.spec.metrics import public_name

    announce(record, record.scheduler, f"{public_name(record.metric)} ({record.mode})")
    outcome, exit_code = run_stoppable(
        lambda: run_sweep(record, resume=bool(resume)), "tune", record.name
    )
    if export_best is not None and outcome.best is not None:
        export_best.parent.mkdir(parents=True, exist_ok=True)
        export_best.write_text(best_spec_yaml(outcome.record, outcome.best), encoding="utf-8")
        err.print(f"best spec written to {escape(str(export_best))}", highlight=False)
    if json_:
        print_json(outcome.as_dict())
    else:
        _render(outcome)
    _conclude(outcome, exit_code, exported=export_best is not None)


def _conclude(outcome: SweepOutcome, exit_code: int, *, exported: bool) -> None:
    """Exit as the outcome says: stopped (continue with --resume), failed, or a hint."""
    if outcome.interrupted:
        continue_with("tune", outcome.record.name)
        raise typer.Exit(exit_code)
    if outcome.best is None:
        err.print("[bold red]error:[/] no trial reported the metric", highlight=False)
        raise typer.Exit(EXIT_JOB_FAILED)
    if not exported:
        err.print(
            f"export the best spec with --export-best FILE; mlflow: {escape(outcome.parent_url)}",
            highlight=False,
        )


def _render(outcome: SweepOutcome) -> None:
    from resnetctl.spec.metrics import public_name
    from resnetctl.tune.view import format_metric

    record = outcome.record
    params = list(record.space.domains)
    metric = public_name(record.metric)
    table = Table(title=f"sweep {record.name}: ranked by {metric} ({record.mode})")
    for column in (
        "#",
        "trial",
        "status",
        "depth",
        "shortcut",
        "variant",
        *params,
        "epochs",
        metric,
        "best",
        "seconds",
    ):
        table.add_column(column, justify="right" if column in ("#", "depth", "epochs") else "left")
    for row in outcome.rows:
        table.add_row(
            str(row.rank or "-"),
            row.trial_id,
            row.status,
            str(row.depth if row.depth is not None else "?"),
            str(row.shortcut or "-"),
            str(row.variant or "?"),
            *(row.params.get(p, "") for p in params),
            str(row.epochs),
            format_metric(row.metric),
            format_metric(row.best),
            format_metric(row.seconds),
        )
    out.print(table)
    for row in outcome.rows:
        if row.error:
            err.print(f"trial {row.trial_id}: {escape(row.error)}", highlight=False)
