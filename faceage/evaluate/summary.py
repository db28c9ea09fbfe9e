"""Every number `eval` reports for one predictions table (`summarize`): the registry's metrics of the whole
table and of each fold, the CS curve, the ε-error's counts, the age groups and the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from faceage.evaluate.folds import FoldStats, FoldSummary, per_fold, summarize_folds
from faceage.evaluate.metrics import (
    Calibration,
    EpsilonError,
    GroupStats,
    calibrate,
    cumulative_score,
    epsilon_error,
    per_decade,
    per_group,
)
from faceage.evaluate.registry import Predictions, Scores, score


@dataclass(frozen=True)
class Metrics:
    """Every number `eval` reports for one predictions table; `scores` holds the registry's "input"
    metrics by key, `epsilon` how many faces the ε-error averages over and how many had σ = 0."""

    n: int
    scores: Scores
    cs: NDArray[np.float64]
    epsilon: EpsilonError
    per_fold: list[FoldStats] | None
    fold_summary: FoldSummary | None
    per_group: list[GroupStats]
    per_decade: list[GroupStats]
    calibration: Calibration | None


def summarize(
    age: ArrayLike,
    pred: ArrayLike,
    *,
    mean: ArrayLike | None = None,
    std: ArrayLike | None = None,
    age_std: ArrayLike | None = None,
    fold: ArrayLike | None = None,
    train_median: ArrayLike | None = None,
    max_theta: int = 20,
) -> Metrics:
    """All metrics of one table; optional columns switch on MAE of the mean, ε-error, folds, calibration and
    the median baseline."""
    p = Predictions.of(age, pred, mean, age_std, train_median)
    folds = (per_fold(p.pred, p.age, fold, mean=p.mean, age_std=p.age_std, train_median=p.train_median)
             if fold is not None else None)
    center, center_name = (p.mean, "mean") if p.mean is not None else (p.pred, "pred")
    calib = None
    # an all-zero std (the L2 baseline writes one) is no uncertainty estimate at all
    if std is not None and np.any(np.asarray(std, dtype=np.float64) > 0):
        calib = calibrate(center, p.age, std, center_name)
    return Metrics(
        n=int(p.age.size),
        scores=score(p, "input"),
        cs=cumulative_score(p.pred, p.age, max_theta),
        epsilon=EpsilonError(None, 0, 0) if p.age_std is None else epsilon_error(p.pred, p.age, p.age_std),
        per_fold=folds,
        fold_summary=summarize_folds(folds) if folds else None,
        per_group=per_group(p.pred, p.age, None if calib is None or std is None else (center, std)),
        per_decade=per_decade(p.pred, p.age),
        calibration=calib,
    )
