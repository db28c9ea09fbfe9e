"""What a loaded age model is (`ModelInfo`), what it returns (`Ages`), and the `Estimator` protocol every
loaded model (torch or ONNX) follows. No torch here: the ONNX path runs without it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from faceage.align.settings import AlignSettings
from faceage.model.calibration import StdBands
from faceage.model.inputs import InputNorm


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is and what its inputs must look like."""

    source: str  # the folder or file it was loaded from
    backbone: str
    loss: str
    img_size: int  # side of the centre crop the network sees
    resize: int  # side the aligned face is resized to before the crop (training's cache size)
    folds: tuple[int, ...]  # the folds averaged
    aligned: str | None  # the aligned folder the run trained on (its align.json says how it was aligned)
    flip: bool = False  # test-time flip: each face averaged with its mirror (inside the model and graph)
    alignment: AlignSettings | None = None  # how its training faces were aligned, as the model records it
    distribution: bool | None = None  # an age distribution (probs) or a regressed age; None: ask the loss
    norm: InputNorm | None = None  # the input normalisation; None: the backbone's, as timm states it
    identity: str = ""  # what tells this model from any other (a content hash): predict tables record it
    std_bands: StdBands | None = None  # the std's factor per predicted-age band (model/calibration.py)

    def __post_init__(self) -> None:
        """A torch model leaves what its backbone and loss imply to be looked up (torch and timm are there);
        an exported one states both, so predicting with it imports neither."""
        if self.distribution is None:
            from faceage.model.losses import loss_class

            object.__setattr__(self, "distribution", loss_class(self.loss).distribution())
        if self.norm is None:
            from faceage.model.network import input_norm

            object.__setattr__(self, "norm", input_norm(self.backbone))


@dataclass(frozen=True)
class Ages:
    """Per-face results, float64: pred = round(mean) half up; std is 0 for l2; probs (N, 101) or None."""

    pred: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    probs: np.ndarray | None


class Estimator(Protocol):
    """Turns normalised crops (N, 3, img_size, img_size) float32 into ages."""

    info: ModelInfo

    def estimate(self, x: np.ndarray) -> Ages: ...


def output_names(info: ModelInfo) -> list[str]:
    """Names of a loaded model's outputs (the torch ensemble's, and the exported graph's)."""
    return ["probs", "mean", "std"] if info.distribution else ["mean", "std"]


def to_ages(outputs: Sequence[np.ndarray], info: ModelInfo) -> Ages:
    """Ages from the model's outputs (torch or ONNX), with the prediction rounded half up (2.5 → 3)."""
    named = dict(zip(output_names(info), outputs, strict=True))
    mean = np.asarray(named["mean"], dtype=np.float64)
    std = np.asarray(named["std"], dtype=np.float64)
    if info.std_bands is not None:  # calibrated by predicted-age band, on top of the graph's scale
        std = info.std_bands.apply(mean, std)
    probs = named.get("probs")
    return Ages(np.floor(mean + 0.5), mean, std,
                None if probs is None else np.asarray(probs, dtype=np.float64))
