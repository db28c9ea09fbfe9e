"""The bundled age model: an exported ONNX file shipped inside the package, with its sha256 beside it.

`bundled_model()` returns the file's path once its checksum matches, so a damaged or swapped copy is refused
before any prediction; nothing is ever downloaded. The model card (README.md here) says what it was trained
on, how, and how well it does on faces it never saw. Reads only files inside this folder.
"""

from __future__ import annotations

from pathlib import Path

from faceage.core.atomic import atomic_path
from faceage.core.errors import FaceageError
from faceage.core.files import file_sha256

ZOO_DIR = Path(__file__).resolve().parent
BUNDLED_NAME = "faceage-age-lite0.onnx"


def bundled_model(folder: Path = ZOO_DIR) -> Path:
    """The bundled model file in `folder`, after checking its sha256 against the one shipped with it."""
    path = folder / BUNDLED_NAME
    expected_file = path.with_name(path.name + ".sha256")
    if not path.is_file() or not expected_file.is_file():
        raise FaceageError(f"{path}: the bundled model is missing from this installation; reinstall "
                           f"faceage from its repository (pip install --force-reinstall .), or pass --model "
                           f"with a run folder, checkpoint or .onnx file.")
    expected = expected_file.read_text().split()[0].lower()
    found = file_sha256(path)
    if found != expected:
        raise FaceageError(f"{path}: the bundled model is damaged (sha256 {found[:16]}…, expected "
                           f"{expected[:16]}… from {expected_file.name}); reinstall faceage (pip install "
                           f"--force-reinstall .) or pass --model with another model.")
    return path


def write_checksum(path: Path) -> str:
    """Write `<path>.sha256` for a freshly exported bundled model; returns the digest."""
    digest = file_sha256(path)
    with atomic_path(path.with_name(path.name + ".sha256")) as tmp:
        tmp.write_text(f"{digest}  {path.name}\n")
    return digest
