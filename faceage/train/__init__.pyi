"""Typed public names of faceage.train (loaded on first use by `__init__.py`)."""

from .config import TrainConfig as TrainConfig, resolve_config as resolve_config
from .fit import TrainResult as TrainResult, results_table as results_table, run_training as run_training
from .job import RunInterruptedError as RunInterruptedError, TrainingJob as TrainingJob
from .runs import RunFolder as RunFolder, resolve_run_config as resolve_run_config
