"""Typed public names of faceage (loaded on first use by `__init__.py`)."""

from .predict.api import FaceAge as FaceAge, estimate_ages as estimate_ages

__version__: str
