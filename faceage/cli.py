"""The `faceage` command line: one thin command per stage, each calling one typed library function.

Commands parse options, build a config, call the library, and print. No library module imports this one.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

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


@app.command("eval")
def eval_command(
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Run folders (their predictions.csv) or predictions CSVs; default: the newest run under runs/.",
        show_default=False,
    )] = None,
    curve: Annotated[Path | None, typer.Option(
        "--curve", help="CS plot (.png, .svg or .pdf); cs.csv (θ + a column per input) is written beside it.",
    )] = None,
    report: Annotated[Path | None, typer.Option(
        "--report", help="Markdown report; links the plot (cs.png beside it unless --curve is given).",
    )] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Metrics as JSON.")] = None,
    max_theta: Annotated[int, typer.Option(
        "--max-theta", help="Largest error level θ (years) of the CS curve.",
    )] = 20,
) -> None:
    """MAE, cumulative score CS(θ), ε-error, per-fold and per-age-group tables of predictions tables."""
    from faceage.evaluate import evaluate
    from faceage.report import console_table

    result = evaluate(inputs or [], curve=curve, report=report, json_path=json_path, max_theta=max_theta)
    console.print(console_table(result.inputs))
    for path in result.written:
        console.print(f"wrote {escape(str(path))}", highlight=False)


@app.command("doctor")
def doctor_command() -> None:
    """Versions, onnxruntime providers, torch devices and where the detector models come from."""
    from faceage.doctor import collect, render

    console.print(render(collect()))


def main() -> None:
    """Entry point of the console script: user errors print one clear message and exit 2."""
    try:
        app()
    except FaceageError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
