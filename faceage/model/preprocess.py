"""Input normalisation on a torch device, for training's batches: the same float32 factors, applied in the
same order, as the numpy test-time path of `faceage.model.inputs`, so both compute the same bits."""

from __future__ import annotations

import torch
from torch import Tensor

from faceage.model.inputs import InputNorm, norm_factors


class Normalizer:
    """uint8 patches (B, H, W, 3) → normalised float (B, 3, H, W): x = pixel · scale + shift."""

    def __init__(self, norm: InputNorm, device: torch.device) -> None:
        scale, shift = norm_factors(norm)
        self.scale = torch.from_numpy(scale).to(device)
        self.shift = torch.from_numpy(shift).to(device)

    def __call__(self, patch: Tensor) -> Tensor:
        """The NCHW float view of NHWC uint8 `patch` (channels_last in memory), normalised."""
        return patch.permute(0, 3, 1, 2).float().mul_(self.scale).add_(self.shift)
