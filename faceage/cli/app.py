"""The Typer application every command registers on, with its global options (--verbose, --version)."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from faceage import __version__
from faceage.core.console import console, setup_logging


class CtrlCError(Exception):
    """Ctrl-C that no stage turned into its own interruption, carried to `faceage.cli.main`, which says so."""


class _Commands(TyperGroup):
    """Typer's group, but a bare Ctrl-C reaches `main` instead of ending in Typer's silent exit 130."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]  # Typer's own Context subclass
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise CtrlCError from exc


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
        console.print(f"faceage {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    setup_logging(verbose)
