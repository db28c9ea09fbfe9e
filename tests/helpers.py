"""What several test files share that is not a fixture: running the console script's entry point."""

from __future__ import annotations

import sys

import pytest

from faceage.cli import main
from faceage.core.console import console

Capsys = pytest.CaptureFixture[str]


def run_main(args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> tuple[int, str]:
    """Run `faceage ARGS` through `main()` (its one error map); the exit code and what it printed,
    unwrapped."""
    monkeypatch.setattr(sys, "argv", ["faceage", *args])
    monkeypatch.setattr(console, "soft_wrap", True)
    with pytest.raises(SystemExit) as exc:
        main()
    captured = capsys.readouterr()
    return int(exc.value.code or 0), captured.out + captured.err
