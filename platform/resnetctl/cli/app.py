"""The `resnetctl` command: one Typer app joining one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from resnetctl import __version__
from resnetctl.cli import analyze as analyze_cmd
from resnetctl.cli import cluster as cluster_cmd
from resnetctl.cli import data as data_cmd
from resnetctl.cli import digits as digits_cmd
from resnetctl.cli import eval as eval_cmd
from resnetctl.cli import export as export_cmd
from resnetctl.cli import jobs as jobs_cmd
from resnetctl.cli import models as models_cmd
from resnetctl.cli import predict as predict_cmd
from resnetctl.cli import reproduce as reproduce_cmd
from resnetctl.cli import spec as spec_cmd
from resnetctl.cli import submit as submit_cmd
from resnetctl.cli import tune as tune_cmd
from resnetctl.cli import ui as ui_cmd
from resnetctl.cli.common import show_deprecations
from resnetctl.cli.help import use_everywhere

app = typer.Typer(
    name="resnetctl",
    help="Train the ResNets of He et al. (CVPR 2016), from a laptop to a GPU cluster.\n\n"
    "Validate job specs, list the models, train with PyTorch DDP under Ray Train on an embedded "
    "or remote Ray cluster, and track every run in MLflow. `resnetctl COMMAND --help` says more."
    "\n\nExit codes (every command): 0 ok, 1 the job or what the command ran failed, 2 bad "
    "input (a usage, spec, file, data or storage error, an unknown run, an unreachable cluster), "
    "130/143 stopped by Ctrl-C/SIGTERM.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"resnetctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """resnetctl: the paper's ResNets, at any scale."""
    show_deprecations()


app.command("models")(models_cmd.models)
app.command("validate")(spec_cmd.validate)
app.command("schema")(spec_cmd.schema)
app.command("submit")(submit_cmd.submit)
app.command("ui")(ui_cmd.ui)
app.command("status")(jobs_cmd.status)
app.command("logs")(jobs_cmd.logs)
app.command("stop")(jobs_cmd.stop)
app.command("list")(jobs_cmd.list_)
app.command("tune")(tune_cmd.tune)
app.command("analyze")(analyze_cmd.analyze)
app.command("eval")(eval_cmd.eval_)
app.command("export")(export_cmd.export)
app.command("predict")(predict_cmd.predict)


data_cmd.app.command("digits")(digits_cmd.digits)
app.add_typer(data_cmd.app, name="data")
app.add_typer(cluster_cmd.app, name="cluster")
app.add_typer(reproduce_cmd.app, name="reproduce")
use_everywhere(app)


def main() -> None:
    """Console-script entry point (also `python -m resnetctl`, which names itself the same)."""
    app(prog_name="resnetctl")
