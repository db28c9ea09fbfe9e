"""Typed public names of faceage.model (loaded on first use by `__init__.py`)."""

from .checkpoint import (
    KeptModel as KeptModel,
    ModelSettings as ModelSettings,
    TrainingState as TrainingState,
    load_checkpoint as load_checkpoint,
    load_kept_model as load_kept_model,
    load_training_state as load_training_state,
    save_checkpoint as save_checkpoint,
)
from .device import resolve_device as resolve_device
from .inputs import InputNorm as InputNorm, centre_offset as centre_offset, preprocess as preprocess
from .losses import (
    DEFAULT_LOSS as DEFAULT_LOSS,
    LOSSES as LOSSES,
    AgeLoss as AgeLoss,
    distribution_stats as distribution_stats,
    loss_class as loss_class,
    make_loss as make_loss,
    register_loss as register_loss,
)
from .network import AgeModel as AgeModel, build_model as build_model, input_norm as input_norm
from .preprocess import Normalizer as Normalizer
from .weights import load_pretrained as load_pretrained
