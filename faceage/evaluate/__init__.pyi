"""Typed public names of faceage.evaluate (loaded on first use by `__init__.py`)."""

from .registry import METRICS as METRICS, Metric as Metric
from .report import (
    console_table as console_table,
    markdown_report as markdown_report,
    metrics_json as metrics_json,
)
from .run import EvalResult as EvalResult, evaluate as evaluate
from .summary import Metrics as Metrics, summarize as summarize
