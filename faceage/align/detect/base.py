"""What every detector backend shares: the `Face` it returns, the `Detector` protocol, input checks, NMS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

NMS_IOU = 0.4  # the overlap at which both reference implementations suppress a weaker box


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in pixels of the image given to `detect()`.

    `box` is (4,) float32 x1, y1, x2, y2; `kps` is (5, 2) float32, sub-pixel: left eye, right eye, nose tip,
    left mouth corner, right mouth corner (image left/right, the ArcFace order).
    """

    box: np.ndarray
    score: float
    kps: np.ndarray


class Detector(Protocol):
    """Finds faces in an H×W×3 uint8 RGB image; returns them sorted by score, best first."""

    name: str

    def detect(self, image: np.ndarray) -> list[Face]: ...


def check_image(image: np.ndarray) -> None:
    """Refuse anything but an H×W×3 uint8 array (the runner converts grayscale, RGBA, 16-bit before this)."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"detect() needs an H×W×3 uint8 RGB array, got {got}")


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first."""
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        w = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
        h = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
        inter = w * h
        overlap = inter / np.maximum(areas[best] + areas[rest] - inter, 1e-9)
        order = rest[overlap <= iou]
    return np.asarray(keep, dtype=np.int64)


def to_faces(boxes: np.ndarray, scores: np.ndarray, kps: np.ndarray) -> list[Face]:
    """Package parallel arrays (N×4, N, N×5×2) as Faces sorted by score, best first."""
    order = np.argsort(-scores, kind="stable")
    return [
        Face(
            box=np.asarray(boxes[i], dtype=np.float32).reshape(4),
            score=float(scores[i]),
            kps=np.asarray(kps[i], dtype=np.float32).reshape(5, 2),
        )
        for i in order
    ]
