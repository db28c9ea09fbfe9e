"""Photos → ages: reads images and a model (a run folder, a checkpoint or an exported ONNX file), writes
the face predictions table (.csv/.json) and drawn copies; `export_onnx` writes a run as ONNX, checked
against torch. Never imports train.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "estimate_ages": "api",
    "FaceAge": "api",
    "load_estimator": "estimator",
    "Estimator": "estimator",
    "ModelInfo": "estimator",
    "predict_images": "photos",
    "PredictOptions": "photos",
    "PredictResult": "photos",
    "write_predictions": "photos",
    "export_onnx": "export",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
