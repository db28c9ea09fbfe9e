"""Which torch device a model runs on: the one rule for train, predict and the benchmarks; and the
per-device settings that make it fast there."""

from __future__ import annotations

import ctypes
import os
import platform

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


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEPT_AT_HEAP_TOP = 2**31 - 1  # freed bytes at the heap's top that glibc keeps (mallopt takes an int)


def reuse_freed_memory(device: torch.device) -> bool:
    """On the CPU under glibc, serve every block from the heap and keep freed memory there for the next
    step; return whether the setting was made (it holds for the whole process).

    glibc hands blocks over 32 MiB (a batch's activations) to mmap and unmaps them on free, so every step
    of training or batched prediction faults its activations in again, a page at a time, zeroed by the
    kernel: over a million page faults and 40 % of the CPU time in a tf_efficientnet_lite0 training step at
    batch 64. Kept in the heap they are reused: `benchmarks/cpu_allocator.py` measures the step about twice
    as fast for about 1.2× the peak memory. Left alone on CUDA, off glibc, and where the user set glibc's
    malloc variables (MALLOC_MMAP_MAX_, MALLOC_TRIM_THRESHOLD_, GLIBC_TUNABLES)."""
    if device.type != "cpu" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")):
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEPT_AT_HEAP_TOP))
