"""The package map: each stage package names a public API that resolves, and the light packages stay light
(import-linter checks the import rules statically; these check what an import really loads)."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

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


HEAVY = ("torch", "torchvision", "timm", "insightface")

_PREDICT_AND_LIST_MODULES = """
import sys
from faceage.cli import main
photo = sys.argv[1]
sys.argv = ["faceage", "predict", photo]
try:
    main()
except SystemExit as exc:
    assert not exc.code, exc.code
import faceage
faces = faceage.estimate_ages(photo)
assert len(faces) == 1 and 20 < faces[0].age < 90, faces
print(",".join(m for m in {heavy!r} if m in sys.modules))
"""


def test_predicting_with_an_exported_model_needs_no_torch(morph_dir: Path) -> None:
    """The bundled (ONNX) model predicts through the command line and `estimate_ages` without importing
    the training stack: an install without torch can predict."""
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    code = _PREDICT_AND_LIST_MODULES.format(heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code, str(photo)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "", f"imported {done.stdout.strip()}"


def test_the_command_line_starts_without_the_heavy_libraries() -> None:
    """`faceage --help` and every command's parsing load none of them: they come with the work."""
    code = "import sys, faceage.cli; print(','.join(m for m in ('torch', 'pandas', 'cv2', 'onnxruntime', " \
           "'sklearn', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "", f"faceage.cli imported {out.strip()}"
