"""The `faceage` command line: one thin command per stage, each calling one typed library function.

Commands parse options, call the library, and print. `app` holds the Typer application; `data`, `models`,
`study` and `tools` register the commands on it, in the order `--help` lists them. No library package
imports this.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from faceage.cli import data, models, study, tools  # noqa: F401 - importing them registers their commands
from faceage.cli.app import app
from faceage.core.console import console
from faceage.core.errors import FaceageError

__all__ = ["app", "main"]


def main() -> None:
    """Entry point of the console script: user errors print one clear message and exit 2."""
    try:
        app()
    except FaceageError as exc:
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    except OSError as exc:  # a file problem no stage foresaw: one line naming the file, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}; check the disk, "
                      "the path and its permissions, then run the same command again.", highlight=False)
        sys.exit(2)
