"""A trained age model ready to predict: `load_estimator` opens a run folder or checkpoint (torch,
`torch_model`), an exported .onnx file or the bundled model (onnxruntime, `onnx_model`).

Inputs are training's test-time tensors (`faceage.model.inputs`): the aligned crop resized to the run's
`resize` as the image cache does, its centre crop and the backbone's normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from faceage.core.errors import FaceageError
from faceage.core.extras import require_extra
from faceage.model.inputs import preprocess as preprocess_crops
from faceage.predict.info import Estimator, ModelInfo


def load_estimator(model: str | Path | None = None, fold: int | None = None, device: str = "auto",
                   threads: int = 1) -> Estimator:
    """The model at `model`: a run folder (all folds averaged, or `fold`), a checkpoint, or an .onnx file;
    None: the bundled model (faceage/zoo), its checksum verified."""
    from faceage.predict.onnx_model import load_onnx

    if model is None:
        if fold is not None:
            raise FaceageError("--fold picks a fold of a run folder; the bundled model has none (pass "
                               "--model RUN to predict with one of a run's folds).")
        from faceage.zoo import bundled_model

        return load_onnx(bundled_model(), device, threads)
    path = Path(model).expanduser()
    if path.suffix.lower() == ".onnx":
        if fold is not None:
            raise FaceageError(f"{path}: --fold picks a fold of a run folder; an exported model is already "
                               f"fixed (export it again with `faceage export RUN --fold {fold}`).")
        return load_onnx(path, device, threads)
    require_extra("train", f"predicting with {path} (a run folder or checkpoint: torch; an exported .onnx "
                           f"needs none)")
    from faceage.predict.torch_model import TorchEstimator, load_ensemble

    ensemble, info = load_ensemble(path, fold)
    return TorchEstimator(ensemble, info, device)


def preprocess(crops: Sequence[np.ndarray] | np.ndarray, info: ModelInfo) -> np.ndarray:
    """Aligned uint8 faces → the model's normalised input, through training's test path."""
    assert info.norm is not None  # ModelInfo fills it in
    return preprocess_crops(crops, info.img_size, info.resize, info.norm)
