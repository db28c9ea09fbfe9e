"""faceage: deep age estimation from a face with the mean-variance loss (Pan et al., CVPR 2018)."""

__version__ = "0.1.0"

from faceage.core.lazy import lazy_exports  # after __version__, which the CLI reads cheaply

_EXPORTS = {"estimate_ages": "predict.api", "FaceAge": "predict.api"}
__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
