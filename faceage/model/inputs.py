"""The network's input, without torch: the normalisation a backbone expects (`InputNorm`), the centre crop,
and the test-time preprocessing from aligned uint8 faces to float32 (N, 3, img_size, img_size).

Training's validation and test passes (`preprocess.Normalizer` on the device), predict (this module, in
numpy, so an exported model predicts without torch) and export's parity check all resize the face to the
run's `resize` (Lanczos, as the image cache stores it: `core.imageio.resize_square`), cut out the centre
`img_size` square and apply x = pixel · scale + shift with the float32 factors of `norm_factors`: one
multiply and one add per value, in that order, so every path computes the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from faceage.core.imageio import resize_square


class InputNorm(NamedTuple):
    """Per-channel (RGB) mean and std on the 0..1 pixel scale: x = (pixel / 255 − mean) / std."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


def norm_factors(norm: InputNorm) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), float32 arrays of shape (1, 3, 1, 1): x = pixel · scale + shift."""
    if len(norm.mean) != 3 or len(norm.std) != 3 or min(norm.std) <= 0:
        raise ValueError(f"mean and std must be 3 values (RGB) with std > 0, not {norm.mean} and {norm.std}")
    mean = np.asarray(norm.mean, dtype=np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(norm.std, dtype=np.float32).reshape(1, 3, 1, 1)
    return np.float32(1.0) / (np.float32(255.0) * std), -mean / std


def centre_offset(side: int, crop: int) -> int:
    """Where the centre crop of `crop` pixels starts in a side of `side` pixels (training's eval crop)."""
    return (side - crop) // 2


def preprocess(crops: Sequence[np.ndarray] | np.ndarray, img_size: int, resize: int,
               norm: InputNorm) -> np.ndarray:
    """Aligned uint8 faces → normalised (N, 3, img_size, img_size) float32, as training's test pass feeds
    them: resized to `resize`, centre-cropped to `img_size`, normalised with `norm`."""
    if len(crops) == 0:
        return np.zeros((0, 3, img_size, img_size), dtype=np.float32)
    if not 1 <= img_size <= resize:
        raise ValueError(f"img_size {img_size} must lie in 1..resize ({resize})")
    scale, shift = norm_factors(norm)
    top = left = centre_offset(resize, img_size)
    out = np.empty((len(crops), 3, img_size, img_size), dtype=np.float32)
    for i, crop in enumerate(crops):  # one face at a time: no stacked or transposed copies of the batch
        face = resize_square(np.asarray(crop, dtype=np.uint8), resize)
        face = face[top:top + img_size, left:left + img_size]
        np.multiply(face.transpose(2, 0, 1), scale[0], out=out[i])  # uint8 → float32 exactly, then × scale
    out += shift
    return out
