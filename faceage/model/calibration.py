"""Calibration of the predicted uncertainty: a scale on the std, fitted on validation faces.

A model trained with the mean-variance loss is over-confident: its variance term rewards narrow
distributions, so fewer faces lie within one predicted std of their age than a Gaussian's 68.3 %. The std
scale s multiplies every predicted std; it is fitted by Gaussian likelihood on the fold's validation rows
only (never its test rows): s² = mean((age − mean)² / std²). It leaves the mean, and so the MAE, untouched,
and lives in the model (`AgeModel.std_scale`), so the fold's predictions, `predict` and the exported graph
all apply it; the age distribution itself (`probs`) stays the network's own.

`fit_temperature` is the alternative it was measured against (dividing the logits by T, fitted by the
likelihood of each face's age class): it reached the same coverage, but by flattening the distribution's
tails it pulled the mean towards the middle of 0..100 and cost MAE (on the bundled model's held-out faces:
+0.16 years against none). Every calibrated fold still logs both (train/calibrate.py).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

from faceage.model.losses import AGE_CLASSES

TEMPERATURE_BOUNDS = (0.05, 20.0)


def std_scale(mean: np.ndarray, std: np.ndarray, ages: np.ndarray) -> float:
    """The factor s on the std that maximises the Gaussian likelihood of `ages`: s² = mean((age − mean)² /
    std²) (faces with a zero std left out; 1 when none is left)."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    usable = std > 0
    if not usable.any():
        return 1.0
    return float(np.sqrt(np.mean(((ages - mean)[usable] / std[usable]) ** 2)))


def fit_temperature(logits: Tensor, ages: Tensor) -> float:
    """The temperature minimising the mean negative log-likelihood of `ages` (years, rounded to their age
    class) under softmax(logits / T), averaged over the views: `logits` is (views, N, 101) — one view, or
    a face and its mirror."""
    if logits.ndim != 3 or logits.shape[-1] != AGE_CLASSES or logits.shape[1] != len(ages) or not len(ages):
        raise ValueError(f"logits must be (views, N, {AGE_CLASSES}) with N = len(ages) ≥ 1, got "
                         f"{tuple(logits.shape)} for {len(ages)} ages")
    z = logits.detach().double().cpu()
    target = ages.detach().double().cpu().round().clamp(0, AGE_CLASSES - 1).long()

    def nll(log_t: float) -> float:
        return label_nll(z, target, math.exp(log_t))

    lo, hi = (math.log(b) for b in TEMPERATURE_BOUNDS)
    found = minimize_scalar(nll, bounds=(lo, hi), method="bounded", options={"xatol": 1e-4})
    return float(math.exp(found.x))


def label_nll(logits: Tensor, target: Tensor, temperature: float) -> float:
    """Mean −log p(age class) under the view-averaged softmax(logits / temperature)."""
    probs = torch.softmax(logits / temperature, dim=-1).mean(0)
    picked = probs.gather(1, target[:, None])[:, 0]
    return float(-torch.log(picked.clamp_min(1e-300)).mean())
