"""faceage: deep age estimation from a face with the mean-variance loss (Pan et al., CVPR 2018)."""

import lazy_loader

__version__ = "0.1.0"

__getattr__, __dir__, _lazy_names = lazy_loader.attach_stub(__name__, __file__)
__all__ = ["__version__", *_lazy_names]
