"""The `faceage` command line: one thin command per stage, each calling one typed library function.

Commands parse options, call the library, and print; `main` alone turns errors and interruptions into a
message and an exit code. `app` holds the Typer application, `options` the options several commands share,
and each command lives in its own module, registered below in the order `--help` lists them. No library
package imports this.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from faceage.core.console import console
from faceage.core.errors import FaceageError, StageInterruptedError

from . import align, evaluate, export, manifest, predict, study, tools, train
from .app import CtrlCError, app

__all__ = ["app", "main"]

MESSAGE_LIMIT = 2000  # characters of an error message printed; a quoted value rarely needs more than 200

for _name, _command in (
    ("align", align.align_command), ("manifest", manifest.manifest_command), ("train", train.train_command),
    ("eval", evaluate.eval_command), ("study", study.study_command), ("predict", predict.predict_command),
    ("export", export.export_command), ("doctor", tools.doctor_command), ("demo", tools.demo_command),
):
    app.command(_name)(_command)


def shown(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """A message as printed: one that quotes a huge value (a 100 MB path from a table, say) keeps its start
    and end and says how much was left out, so printing it takes no time."""
    if len(message) <= limit:
        return message
    half = limit // 2
    return f"{message[:half]} … [{len(message) - 2 * half:,} characters left out] … {message[-half:]}"


def main() -> None:
    """Entry point of the console script, and the one map from errors to messages and exit codes: an
    interruption says what stays and how to resume (130), a user error prints one line (2)."""
    try:
        app()
    except StageInterruptedError as exc:
        for detail in exc.details():
            console.print(detail)
        console.print(f"[yellow]{escape(shown(str(exc)))}[/]", highlight=False)
        sys.exit(130)
    except CtrlCError:
        console.print("[yellow]interrupted; what was written stays: run the same command again to continue "
                      "(faceage train with --resume).[/]", highlight=False)
        sys.exit(130)
    except FaceageError as exc:
        console.print(f"[bold red]error:[/] {escape(shown(str(exc)))}", highlight=False)
        sys.exit(2)
    except OSError as exc:  # a file problem no stage foresaw: one line naming the file, never a traceback
        where = f"{exc.filename}: " if exc.filename else ""
        text = shown(where + (exc.strerror or str(exc)))
        console.print(f"[bold red]error:[/] {escape(text)}; check the disk, "
                      "the path and its permissions, then run the same command again.", highlight=False)
        sys.exit(2)
