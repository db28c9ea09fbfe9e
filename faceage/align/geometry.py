"""Five-point similarity alignment: find the face, fit it to the ArcFace template, warp to a square crop.

Torch-free and onnxruntime-free: the detector comes in as an object with `detect(rgb) -> list[Face]`.
Coordinates follow OpenCV's convention (pixel centres at whole numbers) everywhere, so a landmark at (x, y)
in the source lands exactly where `matrix @ (x, y, 1)` says in the aligned crop.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np
from skimage.transform import SimilarityTransform

from faceage.align.detect import Detector, Face
from faceage.align.settings import DETECT_MAX_SIDE, KEEP_POLICIES, PAD_FRACTION, KeepPolicy

# ArcFace's five-point template for a 112×112 crop (insightface `arcface_dst`): eyes, nose tip, mouth corners.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)
# Warps that shrink the face more than this are pre-shrunk with area averaging, so big photos do not alias.
_MIN_DIRECT_SCALE = 0.75


def template(size: int = 256) -> np.ndarray:
    """The five target points (5×2, output pixels) for a `size`×`size` crop.

    insightface's `norm_crop` rule for 128-multiples, used for every size: scale the 112-px template by
    size/128 and shift it right by 8·size/128 (at 256: ×2, +16 px in x); the framing is the same at any size.
    """
    if size < 16:
        raise ValueError(f"aligned size must be at least 16 px, not {size}")
    ratio = size / 128.0
    points = ARCFACE_112 * ratio
    points[:, 0] += 8.0 * ratio
    return points


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (rotation, uniform scale, shift) taking `src` onto `dst`, as 3×3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if hasattr(SimilarityTransform, "from_estimate"):
        tform = SimilarityTransform.from_estimate(src, dst)
        if not tform:
            raise ValueError(f"similarity fit failed: {tform}")
    else:  # scikit-image < 0.26
        tform = SimilarityTransform()
        if not tform.estimate(src, dst):
            raise ValueError("similarity fit failed (degenerate points)")
    matrix = np.asarray(tform.params, dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ValueError("similarity fit failed (non-finite matrix)")
    return matrix


def warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Resample `image` through the 3×3 source→crop `matrix` into a `size`² crop (bilinear, black border).

    Pixels that map from outside the source are black (zero), as in insightface's `norm_crop`. When the
    warp shrinks by more than 4/3, the region it reads is first reduced with area averaging (`INTER_AREA`),
    which keeps fine detail (wrinkles) free of aliasing when aligning a face from a large photo.
    """
    matrix = np.asarray(matrix, dtype=np.float64)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:2, :2]))))
    if scale < _MIN_DIRECT_SCALE:
        image, matrix = _preshrink(image, matrix, size, scale)
    return cv2.warpAffine(
        image, matrix[:2], (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def _preshrink(
    image: np.ndarray, matrix: np.ndarray, size: int, scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Crop the region the warp reads, area-resize it by `scale`; return it with the adjusted matrix."""
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64)
    src = (np.linalg.inv(matrix) @ corners.T).T[:, :2]
    height, width = image.shape[:2]
    margin = 2.0 / scale
    x0 = int(np.clip(np.floor(src[:, 0].min() - margin), 0, width - 1))
    y0 = int(np.clip(np.floor(src[:, 1].min() - margin), 0, height - 1))
    x1 = int(np.clip(np.ceil(src[:, 0].max() + margin), x0 + 1, width))
    y1 = int(np.clip(np.ceil(src[:, 1].max() + margin), y0 + 1, height))
    crop = image[y0:y1, x0:x1]
    new_w, new_h = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
    small = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
    fx, fy = new_w / (x1 - x0), new_h / (y1 - y0)
    # cv2.resize maps source pixel x to (x - x0 + 0.5)·fx − 0.5 in the shrunk crop
    to_small = np.array([[fx, 0, fx * (0.5 - x0) - 0.5], [0, fy, fy * (0.5 - y0) - 0.5], [0, 0, 1]])
    return small, matrix @ np.linalg.inv(to_small)


def align_face(image: np.ndarray, kps: np.ndarray, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face with landmarks `kps` (5×2 source pixels) onto the `size` template; (crop, 3×3 matrix)."""
    matrix = fit_similarity(kps, template(size))
    return warp(image, matrix, size), matrix


@dataclass(frozen=True)
class Located:
    """Faces found in an image, in its own pixel coordinates; `padded` says the padded retry found them."""

    faces: list[Face]
    padded: bool


def locate(
    detector: Detector, image: np.ndarray, max_side: int = DETECT_MAX_SIDE, pad: float = PAD_FRACTION
) -> Located:
    """Detect faces on a copy no longer than `max_side`, retrying on a padded copy when none is found.

    Boxes and landmarks come back in `image`'s pixels; after the padded retry they may lie outside it, which
    the warp handles (black border).
    """
    height, width = image.shape[:2]
    factor = min(1.0, max_side / max(height, width))
    small = image
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    fx, fy = small.shape[1] / width, small.shape[0] / height
    faces = detector.detect(small)
    offset = 0
    if not faces and pad > 0:
        offset = round(pad * max(small.shape[:2]))
        padded = cv2.copyMakeBorder(small, offset, offset, offset, offset, cv2.BORDER_REPLICATE)
        faces = detector.detect(padded)
    if not faces or (offset == 0 and factor == 1.0):
        return Located(faces, padded=offset > 0)
    scale = np.array([fx, fy], dtype=np.float32)

    def points_back(points: np.ndarray) -> np.ndarray:  # pixel centres: x ↦ (x + ½)/f − ½
        return ((points - offset + 0.5) / scale - 0.5).astype(np.float32)

    def box_back(box: np.ndarray) -> np.ndarray:  # box edges: x ↦ x/f
        return ((box.reshape(2, 2) - offset) / scale).astype(np.float32).reshape(4)

    mapped = [dataclasses.replace(f, box=box_back(f.box), kps=points_back(f.kps)) for f in faces]
    return Located(mapped, padded=offset > 0)


def choose(faces: list[Face], keep: KeepPolicy = "largest") -> Face:
    """The one face to align: the largest box (`largest`) or the highest score (`best`); ties → first."""
    if not faces:
        raise ValueError("no faces to choose from")
    if keep == "largest":
        areas = [float((f.box[2] - f.box[0]) * (f.box[3] - f.box[1])) for f in faces]
        return faces[int(np.argmax(areas))]
    if keep == "best":
        return faces[int(np.argmax([f.score for f in faces]))]
    raise ValueError(f"keep must be one of {KEEP_POLICIES}, not {keep!r}")


def face_size(face: Face) -> float:
    """The shorter side of the face's box, in the pixels of the image it was found in."""
    return float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
