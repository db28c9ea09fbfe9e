"""The one rich console and logger that library code reports through (never bare `print`)."""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

console = Console(stderr=True)
log = logging.getLogger("faceage")


def setup_logging(verbose: bool = False) -> None:
    """Route the `faceage` logger through rich; called once by the CLI."""
    if not any(isinstance(h, RichHandler) for h in log.handlers):
        log.addHandler(RichHandler(console=console, show_path=False, markup=False))
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    log.propagate = False
