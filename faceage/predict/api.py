"""`estimate_ages`: the library call for people who do not want the command line.

    import faceage
    for face in faceage.estimate_ages("photo.jpg"):
        print(face.box, face.age, f"± {face.std:.1f}")

It finds every face, aligns each as the model's training faces were aligned, and predicts its age
distribution: with no `model`, the bundled one (faceage/zoo, checked by its sha256, offline). The detector
and model are loaded once per (model, device) and reused by later calls.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.align.detect import Detector, make_detector
from faceage.align.faces import find_faces
from faceage.align.settings import AlignSettings
from faceage.core.errors import FaceageError
from faceage.core.imageio import ImageLoadError, load_rgb, pil_to_rgb
from faceage.predict.estimator import load_estimator, preprocess
from faceage.predict.info import Estimator
from faceage.predict.options import PredictOptions, alignment_for

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass(frozen=True)
class FaceAge:
    """One face: its box in the image (x1, y1, x2, y2, pixels), the detector's score, the predicted age
    (round(mean), the paper's Eq. 7), the mean of the age distribution and its std (years)."""

    box: tuple[float, float, float, float]
    score: float
    age: int
    mean: float
    std: float


def estimate_ages(image: ImageInput, model: str | Path | None = None, device: str = "auto") -> list[FaceAge]:
    """Every face of `image` large enough to use, best detector score first, with its age ± std.

    `image`: a file path, a Pillow image, or an H×W×3 uint8 RGB array (H×W grey and H×W×4 RGBA are
    accepted too). `model`: a run folder, checkpoint or exported .onnx; None: the bundled model.
    """
    pixels = as_rgb(image)
    estimator, detector, settings = _loaded(None if model is None else str(model), device)
    found = find_faces(detector, pixels, settings)
    usable = [(face.face, face.crop) for face in found.faces if face.crop is not None]
    if not usable:
        return []
    ages = estimator.estimate(preprocess([crop for _, crop in usable], estimator.info))
    faces = []
    for i, (face, _) in enumerate(usable):
        x1, y1, x2, y2 = (float(v) for v in face.box)
        faces.append(FaceAge((x1, y1, x2, y2), float(face.score), int(ages.pred[i]), float(ages.mean[i]),
                             float(ages.std[i])))
    return faces


def as_rgb(image: ImageInput) -> np.ndarray:
    """The pixels of `image` as an H×W×3 uint8 RGB array; FaceageError saying what is accepted otherwise."""
    if isinstance(image, (str, Path)):
        try:
            return load_rgb(image)
        except ImageLoadError as exc:
            raise FaceageError(str(exc)) from None
    if isinstance(image, Image.Image):
        try:
            return pil_to_rgb(image)
        except ImageLoadError as exc:
            raise FaceageError(str(exc)) from None
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise FaceageError(f"an image array must be uint8 (0..255), not {image.dtype}; convert it with "
                               f"(array * 255).round().astype('uint8') if it holds 0..1 values.")
        if image.ndim == 2:
            return np.ascontiguousarray(np.repeat(image[:, :, None], 3, axis=2))
        if image.ndim == 3 and image.shape[2] in (3, 4) and min(image.shape[:2]) > 0:
            return np.ascontiguousarray(image[:, :, :3])
        raise FaceageError(f"an image array must be H×W×3 RGB (or H×W grey, H×W×4 RGBA), not shape "
                           f"{image.shape}.")
    raise FaceageError(f"estimate_ages takes a file path, a PIL image or a numpy RGB array, not "
                       f"{type(image).__name__}.")


@functools.lru_cache(maxsize=4)
def _loaded(model: str | None, device: str) -> tuple[Estimator, Detector, AlignSettings]:
    """The model, and the detector and alignment its training faces were made with (kept for later calls)."""
    estimator = load_estimator(model, device=device)
    options = PredictOptions(device=device)
    settings = alignment_for(estimator.info, options)
    detector = make_detector(settings.detector, settings.model, options.threads, device,
                             settings.score_threshold)
    return estimator, detector, settings
