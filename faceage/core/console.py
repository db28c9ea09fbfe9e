"""The one rich console and logger that library code reports through (never bare `print`), and the one
progress bar every long job shows."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True)
log = logging.getLogger("faceage")


def setup_logging(verbose: bool = False) -> None:
    """Route the `faceage` logger through rich; called once by the CLI."""
    if not any(isinstance(h, RichHandler) for h in log.handlers):
        log.addHandler(RichHandler(console=console, show_path=False, markup=False))
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False


class RateColumn(ProgressColumn):
    """Items per second over the task so far, e.g. `212.4 faces/s`."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:.1f} {self.unit}/s", style="progress.data.speed")


def progress_bar(*extra: ProgressColumn, enabled: bool = True, transient: bool = True) -> Progress:
    """The bar of a long job: description, bar, done/total, elapsed, ETA, then `extra` columns (a rate, a
    status field); `enabled` False shows nothing (a worker rank, a caller that wants quiet)."""
    columns: list[ProgressColumn] = [
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), *extra,
    ]
    return Progress(*columns, console=console, disable=not enabled, transient=transient)
