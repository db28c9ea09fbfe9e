"""Test-time preprocessing: the one path from aligned uint8 faces to the network's input tensor.

Training's validation and test passes (`DeviceImages` in eval mode), predict and export's parity check all
go through `Normalizer` and `centre_offset`: the face resized to the run's `resize` (Lanczos, as the image
cache stores it: `core.imageio.resize_square`), the centre `img_size` square cut out, and the backbone's own
normalisation (`input_norm`) applied with the same float operations, so every path computes the same bits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from faceage.core.imageio import resize_square
from faceage.model.network import InputNorm


def centre_offset(side: int, crop: int) -> int:
    """Where the centre crop of `crop` pixels starts in a side of `side` pixels (training's eval crop)."""
    return (side - crop) // 2


class Normalizer:
    """uint8 patches (B, H, W, 3) → normalised float (B, 3, H, W): x = pixel · 1/(255·std) − mean/std.

    The scale and shift are computed on the CPU and then moved, so every device applies the same numbers.
    """

    def __init__(self, norm: InputNorm, device: torch.device) -> None:
        if len(norm.mean) != 3 or len(norm.std) != 3 or min(norm.std) <= 0:
            raise ValueError(f"mean and std must be 3 values (RGB) with std > 0, not {norm.mean} and "
                             f"{norm.std}")
        mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(norm.std, dtype=torch.float32).view(1, 3, 1, 1)
        self.scale = (1.0 / (255.0 * std)).to(device)
        self.shift = (-mean / std).to(device)

    def __call__(self, patch: Tensor) -> Tensor:
        """The NCHW float view of NHWC uint8 `patch` (channels_last in memory), normalised."""
        return patch.permute(0, 3, 1, 2).float().mul_(self.scale).add_(self.shift)


def preprocess(crops: Sequence[np.ndarray] | np.ndarray, img_size: int, resize: int,
               norm: InputNorm) -> np.ndarray:
    """Aligned uint8 faces → normalised (N, 3, img_size, img_size) float32, as training's test pass feeds
    them: resized to `resize`, centre-cropped to `img_size`, normalised with `norm`."""
    if len(crops) == 0:
        return np.zeros((0, 3, img_size, img_size), dtype=np.float32)
    if not 1 <= img_size <= resize:
        raise ValueError(f"img_size {img_size} must lie in 1..resize ({resize})")
    images = np.stack([resize_square(np.asarray(c, dtype=np.uint8), resize) for c in crops])
    top = left = centre_offset(resize, img_size)
    patch = torch.from_numpy(np.ascontiguousarray(images[:, top:top + img_size, left:left + img_size]))
    return Normalizer(norm, torch.device("cpu"))(patch).contiguous().numpy()
