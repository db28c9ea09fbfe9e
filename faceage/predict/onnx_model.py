"""An exported model in onnxruntime: `faceage export` stores the settings predict needs in the file's
metadata (`faceage.*` keys), and `load_onnx` reads them back. No torch here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from faceage.align.record import align_record, settings_from_record
from faceage.align.settings import AlignSettings
from faceage.core.errors import FaceageError
from faceage.core.files import file_sha256
from faceage.model.calibration import StdBands
from faceage.model.inputs import InputNorm
from faceage.predict.info import Ages, ModelInfo, output_names, to_ages

if TYPE_CHECKING:
    from faceage.align.detect.onnx import OnnxSession

META_PREFIX = "faceage."


class OnnxEstimator:
    """An exported model in onnxruntime (CUDA provider first when present); `provider` is the one the
    session runs on."""

    def __init__(self, session: OnnxSession, info: ModelInfo) -> None:
        self.session = session
        self.info = info
        self.input_name = session.get_inputs()[0].name
        self.provider = session.get_providers()[0]

    def estimate(self, x: np.ndarray) -> Ages:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        return to_ages(self.session.run(output_names(self.info), feed), self.info)


def load_onnx(path: Path, device: str = "auto", threads: int = 1) -> OnnxEstimator:
    """An exported model with the settings `faceage export` stored in its metadata."""
    from faceage.align.detect import onnx_session

    session = onnx_session(path, "ONNX model", f"a file written by `faceage export` (or export it again: "
                           f"`faceage export RUN --onnx {path}`)", device, threads)
    meta = session.get_modelmeta().custom_metadata_map
    outputs = {o.name for o in session.get_outputs()}
    try:
        info = ModelInfo(str(path), meta[META_PREFIX + "backbone"], meta[META_PREFIX + "loss"],
                         int(meta[META_PREFIX + "img_size"]), int(meta[META_PREFIX + "resize"]),
                         tuple(int(k) for k in meta[META_PREFIX + "folds"].split(",") if k),
                         meta.get(META_PREFIX + "aligned") or None,
                         meta.get(META_PREFIX + "tta_flip") == "True",
                         _recorded_alignment(meta, path), distribution="probs" in outputs,
                         norm=_recorded_norm(meta), identity=f"onnx:{file_sha256(path)[:16]}",
                         std_bands=_recorded_bands(meta))
    except (KeyError, ValueError) as exc:
        raise FaceageError(f"{path}: not written by `faceage export` (metadata {exc} missing or bad); export "
                           f"the run with `faceage export RUN --onnx {path}`.") from None
    return OnnxEstimator(session, info)


def onnx_metadata(info: ModelInfo) -> dict[str, str]:
    """The settings an exported file carries, so `load_onnx` can preprocess for it and predict align photos
    as its training faces were (their align record)."""
    values = {"backbone": info.backbone, "loss": info.loss, "img_size": info.img_size, "resize": info.resize,
              "folds": ",".join(str(k) for k in info.folds), "aligned": info.aligned or "",
              "tta_flip": info.flip}
    if info.norm is not None:
        values.update(input_mean=",".join(map(repr, info.norm.mean)),
                      input_std=",".join(map(repr, info.norm.std)))
    if info.alignment is not None:
        values["alignment"] = json.dumps(align_record(info.alignment), sort_keys=True)
    if info.std_bands is not None:
        values["std_bands"] = json.dumps(info.std_bands.to_record())
    return {META_PREFIX + key: str(value) for key, value in values.items()}


def _recorded_bands(meta: dict[str, str]) -> StdBands | None:
    """The std's factors per predicted-age band an exported file carries (None: one scale for all ages)."""
    record = meta.get(META_PREFIX + "std_bands")
    if record is None:
        return None
    try:
        return StdBands.from_record(json.loads(record))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError("faceage.std_bands") from exc


def _recorded_norm(meta: dict[str, str]) -> InputNorm | None:
    """The input normalisation an exported file states (None in files exported before it did: predicting
    with those looks it up in timm, from the backbone's name)."""
    mean, std = meta.get(META_PREFIX + "input_mean"), meta.get(META_PREFIX + "input_std")
    if not mean or not std:
        return None
    return InputNorm(tuple(float(v) for v in mean.split(",")), tuple(float(v) for v in std.split(",")))


def _recorded_alignment(meta: dict[str, str], path: Path) -> AlignSettings | None:
    """How the faces an exported file trained on were aligned: its align record; files exported before
    records existed carry only the detector and crop side (`detector`, `align_size`)."""
    record = meta.get(META_PREFIX + "alignment")
    if record is not None:
        try:
            return settings_from_record(json.loads(record), f"{path} (metadata faceage.alignment)")
        except json.JSONDecodeError as exc:
            raise ValueError("faceage.alignment") from exc
    detector, size = meta.get(META_PREFIX + "detector"), meta.get(META_PREFIX + "align_size")
    return AlignSettings(detector=detector, size=int(size)) if detector and size else None
