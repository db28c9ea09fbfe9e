"""The `faceage` command line: one thin command per stage, each calling one typed library function.

Commands parse options, build a config, call the library, and print. No library module imports this one.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from faceage import __version__
from faceage.console import console, setup_logging
from faceage.errors import FaceageError

app = typer.Typer(
    name="faceage",
    help="Deep age estimation from a face with the mean-variance loss: align → manifest → train → eval → predict.",
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
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    setup_logging(verbose)


# Stage commands are added below, one function each.


def main() -> None:
    """Entry point of the console script: user errors print one clear message and exit 2."""
    try:
        app()
    except FaceageError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
