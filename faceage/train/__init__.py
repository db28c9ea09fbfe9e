"""The train stage: reads a manifest and its aligned images, writes runs/<name>/ (config.yaml, log.txt,
history.csv, fold<k>/last.pt and best.pt, predictions.csv, distributions.npz); resumable, one process or
many (torchrun).
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "TrainConfig": "config",
    "resolve_config": "config",
    "resolve_run_config": "runs",
    "RunFolder": "runs",
    "run_training": "fit",
    "TrainResult": "fit",
    "results_table": "fit",
    "RunInterruptedError": "fold",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
