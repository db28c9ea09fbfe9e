"""Which torch device a model runs on: the one rule for train, predict and the benchmarks."""

from __future__ import annotations

import torch

from faceage.core.errors import FaceageError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` → this process's GPU; FaceageError without CUDA."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise FaceageError(f"--device {name}: no CUDA device is available; use --device cpu or auto.")
        index = int(name.split(":")[1]) if ":" in name else local_rank
        if index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise FaceageError(f"--device {name}: there are {count} CUDA devices (0..{count - 1}); pick one.")
        return torch.device("cuda", index)
    return torch.device("cpu")


def autotune_convolutions(device: torch.device) -> None:
    """On CUDA, let cuDNN time its convolution algorithms for each new input shape and keep the fastest:
    training's batches all have one shape, so the search runs once (in the first step)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
