"""Typed public names of faceage.study (loaded on first use by `__init__.py`)."""

from .plan import StudySpec as StudySpec, parse_losses as parse_losses, parse_seeds as parse_seeds
from .run import (
    StudyInterruptedError as StudyInterruptedError,
    StudyResult as StudyResult,
    run_study as run_study,
)
