"""Which torch device a model runs on: the one rule for train, predict and the benchmarks."""

from __future__ import annotations

import torch

from faceage.core.device import Device, cuda_unavailable, parse_device
from faceage.core.errors import FaceageError


def resolve_device(name: str | Device, local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` → this process's GPU (`local_rank`); `cuda:N` → GPU N.
    CUDA named on a machine without it is one clear FaceageError."""
    device = parse_device(name)
    if device.kind == "cpu" or (device.kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise cuda_unavailable(device, "torch sees no CUDA device")
    index = local_rank if device.index is None else device.index
    count = torch.cuda.device_count()
    if index >= count:
        raise FaceageError(f"--device {device.text}: there are {count} CUDA devices (0..{count - 1}); pick "
                           f"one.")
    return torch.device("cuda", index)


def autotune_convolutions(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms for each new input shape and keep the fastest:
    training's batches all have one shape, so the search runs once (in the first step)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
