"""The train stage: reads a manifest and its aligned images, writes runs/<name>/ (config.yaml, log.txt,
history.csv, fold<k>/last.pt and best.pt, predictions.csv, distributions.npz); resumable, one process or
many (torchrun).
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
