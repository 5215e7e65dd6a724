"""How resnetctl's help reads. Typer renders help text as rich markup and labels every
parameter with its Python type; these command classes make it read as a command line's help:

* help text is shown as written: `pip install 'resnetctl[export]'` keeps its `[export]`,
  which rich would take for a style tag and drop;
* a flag has no value to describe (Typer shows `<bool>`), and an argument is named by its
  metavar alone (not `FILE <path>`); every other option names its value with a metavar given
  where it is declared (tests/cli/test_help.py fails on any `<type>` label left);
* the usage line names arguments as `FILE` and optional ones as `[FILE]` (not `{FILE}`).

`use_everywhere(app)` makes every command and group of an app, its sub-apps included, use them.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperCommand, TyperGroup


class _Argument(TyperArgument):
    """An argument whose metavar says what it is: no type label beside it."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None if self.metavar else super().display_type_rich(ctx)


def _usage(argument: TyperArgument) -> str:
    name = argument.metavar or (argument.name or "").upper()
    if argument.nargs != 1 and not name.endswith("..."):
        name += "..."
    return name if argument.required else f"[{name}]"


def _tidy(params: list[Any]) -> None:
    """Help text as written, no `<bool>` beside a flag, no type beside a named argument; once
    per parameter (Typer adds some, such as --help, after the command is built)."""
    for param in params:
        if getattr(param, "_resnetctl_tidy", False):
            continue
        param._resnetctl_tidy = True
        if getattr(param, "help", None):
            param.help = escape(param.help)
        if type(param) is TyperArgument:
            param.__class__ = _Argument
        elif getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def _tidy_text(command: Any) -> None:
    if command.help:
        command.help = escape(command.help)
    if command.short_help:
        command.short_help = escape(command.short_help)


class _Tidied:
    """Help text as written and parameters tidied, for a command and a group alike (put first
    among the bases, before Typer's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _tidy_text(self)

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        _tidy(params)
        return params


class Command(_Tidied, TyperCommand):
    """A resnetctl command (see the module's docstring)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                pieces.append(_usage(param))
            else:
                pieces.extend(param.get_usage_pieces(ctx))
        return pieces


class Group(_Tidied, TyperGroup):
    """A resnetctl command group (see the module's docstring)."""


def use_everywhere(app: typer.Typer) -> None:
    """Make `app`, its commands and its sub-apps (recursively) use `Command` and `Group`."""
    app.info.cls = Group
    for command in app.registered_commands:
        if command.cls in (None, TyperCommand):  # Typer's default: not a class chosen on purpose
            command.cls = Command
    for group in app.registered_groups:
        group.cls = Group
        if group.typer_instance is not None:
            use_everywhere(group.typer_instance)
