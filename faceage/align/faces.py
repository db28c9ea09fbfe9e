"""The per-face routine that align and predict both run: find the faces of an image, and for each one its
detector fields (score, box, landmarks) and either an aligned crop or why there is none.

Because `faceage align` and `faceage predict` call this one function, a photo given to predict is aligned
exactly as the training faces were: same shrink and padded retry, template, warp and minimum face size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faceage.align.detect import Detector, Face
from faceage.align.geometry import align_face, choose, face_size, locate
from faceage.align.settings import AlignSettings, KeepPolicy
from faceage.core.schema import BOX_COLUMNS, LANDMARK_COLUMNS

NO_FACE = "no face found (also tried a padded copy); check the image."


@dataclass(frozen=True)
class FoundFace:
    """One detected face: `status` ok (with `crop`), too_small or no_face (landmarks that cannot be fitted),
    `error` saying why when it is not ok."""

    face: Face
    status: str
    crop: np.ndarray | None
    error: str = ""

    def fields(self) -> dict[str, float]:
        """Detector score, box and landmarks as table cells (rounded: 5 digits, 2 decimal pixels)."""
        cells = {"score": round(self.face.score, 5)}
        cells.update(zip(BOX_COLUMNS, np.round(self.face.box.astype(float), 2).tolist(), strict=True))
        cells.update(zip(LANDMARK_COLUMNS, np.round(self.face.kps.astype(float).ravel(), 2).tolist(),
                         strict=True))
        return cells


@dataclass(frozen=True)
class FoundFaces:
    """What the detector found in an image (`count`), and the faces examined: every face, or the one kept."""

    count: int
    faces: list[FoundFace]


def find_faces(detector: Detector, image: np.ndarray, settings: AlignSettings,
               keep: KeepPolicy | None = None) -> FoundFaces:
    """Detect the faces of an RGB image and align each one (every face, best score first; with `keep`,
    only the face that policy keeps) to a `settings.size` crop, unless smaller than `settings.min_face`."""
    located = locate(detector, image).faces
    chosen = located if keep is None or not located else [choose(located, keep)]
    return FoundFaces(len(located), [_examine(face, image, settings) for face in chosen])


def _examine(face: Face, image: np.ndarray, settings: AlignSettings) -> FoundFace:
    size = face_size(face)
    if size < settings.min_face:
        error = f"face is {size:.0f} px (< --min-face {settings.min_face:g}); too small to use."
        return FoundFace(face, "too_small", None, error)
    try:
        crop, _ = align_face(image, face.kps, settings.size)
    except ValueError as exc:  # collapsed or non-finite landmarks: no similarity to fit
        return FoundFace(face, "no_face", None, f"the detected face cannot be aligned ({exc}).")
    return FoundFace(face, "ok", crop)
