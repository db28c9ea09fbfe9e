"""The insightface detector: SCRFD (with five keypoints) from a user's ONNX file or model pack, fully offline.

insightface's model zoo builds the model from a local file only (we never pass a name it could download);
we hand it our own session options (thread count) and providers, and feed it BGR, as it expects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from faceage.align.detect.base import Face, check_image, to_faces
from faceage.align.detect.onnx import (
    check_model_file,
    check_provider,
    onnx_providers,
    session_options,
    wants_cuda,
)
from faceage.core.device import parse_device
from faceage.core.errors import FaceageError

INSIGHTFACE_ROOT = Path("~/.insightface/models").expanduser()
# Letterbox size. insightface defaults to 640, but on MORPH mugshots (faces fill the frame) 640 blows faces
# up past the scales SCRFD-500M was trained on: 14 of 200 photos lost their face at 640, none at 480 (median
# score 0.83 vs 0.75), and 480 runs 1.6× faster. Tight chips are padded by the align runner before a retry.
INPUT_SIZE = (480, 480)
NEEDS = "an SCRFD detector .onnx file with keypoints (e.g. det_10g.onnx) or a model-pack folder holding one"


def installed_packs(root: Path = INSIGHTFACE_ROOT) -> list[Path]:
    """Model-pack folders under insightface's root that contain a detector (det_*.onnx)."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("det_*.onnx")))


def resolve_model(model: str | Path | None) -> Path:
    """The detector file to load: `model` itself, or the det_*.onnx inside a model-pack folder."""
    if model is None:
        packs = installed_packs()
        found = (
            f"Packs found: {', '.join(map(str, packs))}." if packs else f"No packs under {INSIGHTFACE_ROOT}."
        )
        raise FaceageError(f"the insightface detector needs --model: pass {NEEDS}. {found}")
    path = Path(model).expanduser()
    if path.is_dir():
        candidates = sorted(path.glob("det_*.onnx"))
        if not candidates:
            raise FaceageError(f"model pack {path} has no det_*.onnx: pass {NEEDS}")
        return candidates[0]
    check_model_file(path, "insightface model", NEEDS)
    if path.suffix.lower() != ".onnx":
        raise FaceageError(f"insightface model {path} is not an .onnx file: pass {NEEDS}")
    return path


class InsightFaceDetector:
    """SCRFD through insightface's model zoo at a fixed 480×480 letterboxed input."""

    def __init__(
        self,
        model: str | Path | None = None,
        threads: int = 1,
        device: str = "auto",
        score_threshold: float = 0.5,
    ) -> None:
        from insightface.model_zoo import get_model
        from insightface.model_zoo.scrfd import SCRFD

        path = resolve_model(model)
        providers = onnx_providers(device)
        try:
            net = get_model(
                str(path), providers=providers, sess_options=session_options(threads), download=False
            )
        except Exception as exc:  # onnxruntime and onnx raise their own types for corrupt or foreign files
            raise FaceageError(f"cannot load insightface model {path}: {exc}. Pass {NEEDS}") from exc
        if not isinstance(net, SCRFD):
            kind = type(net).__name__ if net is not None else "an unknown model"
            raise FaceageError(f"{path} is not a face detector (insightface sees {kind}): pass {NEEDS}")
        if not net.use_kps:
            raise FaceageError(f"{path} is a detector without the five keypoints: pass {NEEDS}")
        gpu = parse_device(device).index or 0
        net.prepare(gpu if wants_cuda(device) else -1, input_size=INPUT_SIZE, det_thresh=score_threshold)
        check_provider(net.session, device, f"insightface model {path}")
        self.net = net
        self.session = net.session
        self.name = f"insightface:{path.stem}"
        self.model_path = path

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an H×W×3 uint8 RGB image, best first (SCRFD's own decoding and NMS)."""
        check_image(image)
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        det, kps = self.net.detect(bgr, input_size=INPUT_SIZE)
        if det.shape[0] == 0:
            return []
        return to_faces(det[:, :4], det[:, 4], kps)


def insightface_sample_photos() -> Path | None:
    """Folder of the sample photos inside the insightface wheel (None if absent): offline demo data."""
    import insightface

    folder = Path(insightface.__file__).parent / "data" / "images"
    return folder if folder.is_dir() else None
