"""The eval stage: reads predictions tables (a run's predictions.csv), writes the CS plot and cs.csv,
metrics.json and report.md: MAE, CS(θ), ε-error, per fold, per age group, uncertainty shares. Imports only
core, never torch.
"""

from faceage.core.lazy import lazy_exports

_EXPORTS = {
    "evaluate": "run",
    "EvalResult": "run",
    "summarize": "metrics",
    "Metrics": "metrics",
    "console_table": "report",
    "markdown_report": "report",
    "metrics_json": "report",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
