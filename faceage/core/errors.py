"""The user-facing errors: the CLI prints their message (no traceback) and exits 2, or 130 for an
interruption."""

from __future__ import annotations

from collections.abc import Sequence


class FaceageError(Exception):
    """A problem the user can fix; the message names the file and what to do."""


class StageInterruptedError(FaceageError):
    """Ctrl-C stopped a stage once what it had done was safely written; the message says what stays and how
    to resume. The base of every stage's interruption, so the CLI maps them all in one place."""

    def details(self) -> Sequence[object]:
        """Rich renderables the CLI prints above the message (a stage's summary); none by default."""
        return ()
