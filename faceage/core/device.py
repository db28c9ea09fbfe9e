"""The one device vocabulary of every command: `auto`, `cpu`, `cuda` or `cuda:N`.

Parsed once here (no torch, no onnxruntime), then handed to the torch side (`faceage.model.device`) and the
onnxruntime side (`faceage.align.detect.onnx`), which each say in the same words when CUDA is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from faceage.core.errors import FaceageError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (GPU N)."
_PATTERN = re.compile(r"^(auto|cpu|cuda)(?::(\d{1,4}))?$")


@dataclass(frozen=True)
class Device:
    """A parsed `--device`: kind auto, cpu or cuda, and the CUDA index when one was named."""

    kind: str
    index: int | None = None

    @property
    def text(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"

    @property
    def explicit_cuda(self) -> bool:
        """Whether CUDA was asked for by name (so its absence is an error, not a fallback to the CPU)."""
        return self.kind == "cuda"


def parse_device(text: str | Device) -> Device:
    """`text` as a Device; FaceageError listing the accepted forms otherwise."""
    if isinstance(text, Device):
        return text
    match = _PATTERN.match(str(text).strip().lower())
    if match is None or (match[2] is not None and match[1] != "cuda"):
        shown = str(text)[:40]
        raise FaceageError(f"--device {shown!r}: choose {DEVICE_CHOICES}.")
    return Device(match[1], None if match[2] is None else int(match[2]))


def cuda_unavailable(device: Device, why: str) -> FaceageError:
    """The one message for CUDA asked for by name on a machine (or build) without it; `why` says which part
    found none, and how to get it."""
    return FaceageError(f"--device {device.text}: CUDA is not available ({why}); use --device cpu or auto, "
                        f"or see `faceage doctor`.")
