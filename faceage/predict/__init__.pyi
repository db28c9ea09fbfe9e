"""Typed public names of faceage.predict (loaded on first use by `__init__.py`)."""

from .api import FaceAge as FaceAge, estimate_ages as estimate_ages
from .estimator import load_estimator as load_estimator
from .export import export_onnx as export_onnx
from .info import Ages as Ages, Estimator as Estimator, ModelInfo as ModelInfo
from .options import PredictOptions as PredictOptions, alignment_for as alignment_for
from .output import PredictionFile as PredictionFile
from .photos import PredictResult as PredictResult, predict_images as predict_images
