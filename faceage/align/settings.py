"""The settings of `faceage align` that change what it writes, and their hash (the `settings` column).

`AlignSettings.digest` goes into every faces.csv row, so a rerun with other settings knows which rows to
redo; predict aligns with the settings of the faces a model trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from faceage.align.detect import detector_spec
from faceage.core.device import parse_device
from faceage.core.errors import FaceageError
from faceage.core.extras import require_extra
from faceage.core.imageio import MAX_PIXELS
from faceage.core.layout import ALIGNED_FORMATS

# Bump when the alignment itself changes (template rule, detection size, padding, warp), so reruns redo rows.
ALIGN_VERSION = 1
# Detection runs on a copy whose longest side is at most this (insightface's default input size; the
# retinaface backend caps its input the same way). Larger faces outgrow the detectors' anchors (measured: a
# 6000×7200 photo filled by a face gives wrong boxes at 1600 px, right ones at 480–1024), and the padded
# retry of a huge photo then copies 640² pixels, not gigapixels.
DETECT_MAX_SIDE = 640
# When nothing is found, detection is retried on a copy padded by this fraction of the longest side on every
# side: tight crops (UTKFace chips, ChaLearn) fill the frame, larger than the detector's anchors expect.
PAD_FRACTION = 0.5
KeepPolicy = Literal["largest", "best"]
KEEP_POLICIES: tuple[KeepPolicy, ...] = ("largest", "best")

# Faces whose box is narrower than this (source pixels) would be upscaled 8× or more into a 256-px crop:
# a blur without the skin texture age estimation reads. Tiny faces get status too_small instead.
MIN_FACE = 32.0


@dataclass(frozen=True)
class AlignSettings:
    """The options of `faceage align` that change what it writes (workers and shards do not)."""

    detector: str = field(default="retinaface", metadata={
        "help": "Face detector: retinaface (bundled, offline) or insightface (SCRFD; needs its model file)."})
    model: str | None = field(default=None, metadata={
        "help": "Detector ONNX file, or an insightface model-pack folder; none: the bundled model."})
    size: int = field(default=256, metadata={"help": "Side of the square aligned crop, px."})
    fmt: str = field(default="jpg", metadata={"help": f"Output format: {' or '.join(ALIGNED_FORMATS)}."})
    quality: int = field(default=95, metadata={"help": "JPEG quality, 1..100."})
    keep: KeepPolicy = field(default="largest", metadata={
        "help": "Face kept when there are several: largest (box area) or best (score)."})
    min_face: float = field(default=MIN_FACE, metadata={
        "help": "A kept face whose box's shorter side is below this (source px) is too_small."})
    score_threshold: float = field(default=0.5, metadata={"help": "Detector confidence a face needs, 0..1."})
    device: str = "auto"

    def check(self) -> None:
        """Refuse impossible settings before any work starts."""
        spec = detector_spec(self.detector)
        if spec.extra is not None:
            require_extra(spec.extra, f"--detector {self.detector}")
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
        parse_device(self.device)

    def digest(self) -> str:
        """A short hash of every setting that changes the output, including which model file is used."""
        fields = asdict(self)
        del fields["device"]  # CPU and GPU give the same faces to within float noise
        fields["model"] = model_identity(self.detector, self.model)
        fields["quality"] = self.quality if self.fmt == "jpg" else None
        fields["algorithm"] = [ALIGN_VERSION, DETECT_MAX_SIDE, PAD_FRACTION, MAX_PIXELS]
        text = json.dumps(fields, sort_keys=True)
        return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def model_identity(detector: str, model: str | None) -> str:
    """The detector model's content hash (a file, or every .onnx in a model pack), or, without a file, the
    version of the package the registered backend takes its model from."""
    if model is None:
        return detector_spec(detector).bundled_identity()
    path = Path(model).expanduser()
    files = sorted(path.glob("*.onnx")) if path.is_dir() else [path]
    digest = hashlib.blake2b(digest_size=8)
    for file in files:
        if file.is_file():
            digest.update(file.name.encode())
            digest.update(file.read_bytes())
    return f"{detector}:{digest.hexdigest()}"
