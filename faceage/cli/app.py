"""The Typer application every command registers on, with its global options (--verbose, --version)."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from faceage import __version__
from faceage.core.console import setup_logging


class CtrlCError(Exception):
    """Ctrl-C that no stage turned into its own interruption, carried to `faceage.cli.main`, which says so."""


class _Commands(TyperGroup):
    """Typer's group, but a bare Ctrl-C reaches `main` instead of ending in Typer's silent exit 130, and
    on/off flags show no value placeholder in --help (Typer prints `--resume <bool>`, as if it took one)."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # Typer's own Context subclass
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise CtrlCError from exc

    def get_params(self, ctx: Any) -> list[Any]:
        return _without_flag_metavars(super().get_params(ctx))

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _without_flag_metavars(command.get_params(ctx))
        return command


def _without_flag_metavars(params: list[Any]) -> list[Any]:
    """Typer (which brings its own click) shows a flag's type as its value; an empty metavar shows none."""
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    return params


app = typer.Typer(
    name="faceage",
    cls=_Commands,
    help="Age estimation from a face with the mean-variance loss: align → manifest → train → eval → predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"faceage {__version__}")  # stdout: `faceage --version > file` and scripts read it
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    setup_logging(verbose)
