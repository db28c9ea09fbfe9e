"""The eval stage: reads predictions tables (a run's predictions.csv), writes the CS plot and cs.csv,
metrics.json and report.md: MAE, CS(θ), ε-error, per fold, per age group, uncertainty shares. The metrics
every table lists are declared once, in `registry.METRICS`. Imports only core, never torch.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
