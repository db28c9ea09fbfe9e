"""The package map: each stage package names a public API that resolves, and the light packages stay light
(import-linter checks the import rules statically; these check what an import really loads)."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PACKAGES = ("core", "align", "manifest", "model", "train", "evaluate", "predict", "study")


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_resolves(name: str) -> None:
    package = importlib.import_module(f"faceage.{name}")
    assert package.__all__, name
    for attribute in package.__all__:
        assert getattr(package, attribute) is not None, f"faceage.{name}.{attribute}"
    with pytest.raises(AttributeError, match="attribute nothing"):
        package.nothing  # noqa: B018


@pytest.mark.parametrize("module", ["faceage.cli", "faceage.evaluate.run", "faceage.evaluate.compare",
                                    "faceage.align.run", "faceage.manifest.build", "faceage.train.config"])
def test_importing_does_not_load_torch(module: str) -> None:
    """The command line starts without torch; eval, align and manifest never need it."""
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", module
