"""Age-estimation metrics on plain arrays (numpy only): MAE, cumulative score, ε-error, groups, calibration.

Definitions (the guide's, checked exactly by the tests):
- error e = |pred − age|, `pred` used as given (the trainer writes round(mean); nothing is re-rounded here).
- MAE = mean e. CS(θ) = fraction with e ≤ θ (ties count; `TOL` absorbs float noise such as 10.3 − 5.3).
- ε-error (ChaLearn LAP) = 1 − mean exp(−(pred − μ)² / (2σ²)), μ = age, σ = age_std. Where σ = 0 the limit
  σ → 0 is taken: the image scores error 0 if pred equals μ (within `TOL`) and 1 otherwise. Rows whose σ is
  unknown (NaN) are left out of the mean; with no σ at all the ε-error is None.
- Age groups are taken on the true age, lower bound included and upper excluded: 0–19 is [0, 20).

Which of these every table lists (and how each is shown) is declared once, in `registry`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

TOL = 1e-9
CS_REPORT_THETA = 5
PAPER_GROUPS: tuple[tuple[str, float, float], ...] = (
    ("0–19", 0, 20), ("20–39", 20, 40), ("40–59", 40, 60), ("60–79", 60, 80), ("80+", 80, math.inf),
)

Floats = NDArray[np.float64]


def _arr(x: ArrayLike) -> Floats:
    return np.asarray(x, dtype=np.float64)


def abs_errors(pred: ArrayLike, age: ArrayLike) -> Floats:
    """Absolute error per image, |pred − age|."""
    return np.abs(_arr(pred) - _arr(age))


def mae(pred: ArrayLike, age: ArrayLike) -> float:
    """Mean absolute error."""
    return float(abs_errors(pred, age).mean())


def cs_at(errors: ArrayLike, theta: float) -> float:
    """Fraction of absolute errors at most `theta` years (ties count)."""
    return float((_arr(errors) <= theta + TOL).mean())


def cumulative_score(pred: ArrayLike, age: ArrayLike, max_theta: int = 20) -> Floats:
    """CS(θ) for θ = 0, 1, …, max_theta: entry θ is the fraction of images with |pred − age| ≤ θ."""
    err = abs_errors(pred, age)
    return np.array([cs_at(err, theta) for theta in range(max_theta + 1)])


@dataclass(frozen=True)
class EpsilonError:
    """The ε-error, how many images it averages over, and how many of those had σ = 0."""

    value: float | None
    n: int
    n_sigma_zero: int


def epsilon_error(pred: ArrayLike, mu: ArrayLike, sigma: ArrayLike) -> EpsilonError:
    """ChaLearn LAP ε-error; σ = 0 scores 0 for an exact hit and 1 otherwise, NaN σ rows are skipped."""
    pred_a, mu_a, sigma_a = _arr(pred), _arr(mu), _arr(sigma)
    known = ~np.isnan(sigma_a)
    pred_a, mu_a, sigma_a = pred_a[known], mu_a[known], sigma_a[known]
    if pred_a.size == 0:
        return EpsilonError(None, 0, 0)
    diff = pred_a - mu_a
    zero = sigma_a == 0
    score = np.empty_like(diff)
    score[zero] = np.where(np.abs(diff[zero]) <= TOL, 0.0, 1.0)
    positive = ~zero
    score[positive] = 1.0 - np.exp(-(diff[positive] ** 2) / (2.0 * sigma_a[positive] ** 2))
    return EpsilonError(float(score.mean()), int(pred_a.size), int(zero.sum()))


@dataclass(frozen=True)
class GroupStats:
    """Count, MAE and mean signed error (pred − age, the bias) of the images whose true age is in [lo, hi),
    and, where the table has a predicted std, the shares within 1 and 2 stds (is the uncertainty honest at
    this age?)."""

    label: str
    lo: float
    hi: float
    n: int
    mae: float | None
    bias: float | None
    within_1std: float | None = None
    within_2std: float | None = None


def _group(pred: Floats, age: Floats, label: str, lo: float, hi: float,
           spread: tuple[Floats, Floats] | None = None) -> GroupStats:
    inside = (age >= lo) & (age < hi)
    if not inside.any():
        return GroupStats(label, lo, hi, 0, None, None)
    diff = pred[inside] - age[inside]
    shares: tuple[float | None, float | None] = (None, None)
    if spread is not None:
        honest = calibrate(spread[0][inside], age[inside], spread[1][inside], "")
        shares = (honest.within_1std, honest.within_2std)
    n, mae_, bias = int(inside.sum()), float(np.abs(diff).mean()), float(diff.mean())
    return GroupStats(label, lo, hi, n, mae_, bias, *shares)


def per_group(pred: ArrayLike, age: ArrayLike, spread: tuple[ArrayLike, ArrayLike] | None = None,
              groups: tuple[tuple[str, float, float], ...] = PAPER_GROUPS) -> list[GroupStats]:
    """Per true-age group (label, lo, hi: lo ≤ age < hi), by default the paper's Table 1 groups (0–19 …
    80+), all listed; an empty group has n = 0 and None metrics. `spread` (the center the std is around,
    the std) adds each group's shares within 1 and 2 stds."""
    pred_a, age_a = _arr(pred), _arr(age)
    arrays = None if spread is None else (_arr(spread[0]), _arr(spread[1]))
    return [_group(pred_a, age_a, label, lo, hi, arrays) for label, lo, hi in groups]


def per_decade(pred: ArrayLike, age: ArrayLike) -> list[GroupStats]:
    """Decades of true age (0–9, 10–19, …) from the youngest to the oldest present; empty decades omitted."""
    pred_a, age_a = _arr(pred), _arr(age)
    decades = np.unique(np.floor(age_a / 10).astype(int) * 10)
    return [_group(pred_a, age_a, f"{d}–{d + 9}", d, d + 10) for d in decades.tolist()]


COVERAGE_MULTIPLES = tuple(0.25 * i for i in range(1, 13))  # 0.25 … 3 stds: the coverage picture's x


def gaussian_share(multiple: float) -> float:
    """Share of a Gaussian within `multiple` stds of its mean: erf(k / √2) (68.3 % at 1, 95.4 % at 2)."""
    return math.erf(multiple / math.sqrt(2))


@dataclass(frozen=True)
class Calibration:
    """Share of faces with |center − age| within 1 and 2 predicted stds (a Gaussian gives 68.3 %, 95.4 %),
    and within each of COVERAGE_MULTIPLES stds (`shares`)."""

    center: str
    within_1std: float
    within_2std: float
    shares: tuple[float, ...] = ()


def calibrate(center: ArrayLike, age: ArrayLike, std: ArrayLike, center_name: str) -> Calibration:
    """Is the predicted uncertainty honest? `center_name` says which column gave the centre (mean or pred)."""
    err = abs_errors(center, age)
    std_a = _arr(std)

    def within(k: float) -> float:
        return float((err <= k * std_a + TOL).mean())

    return Calibration(center_name, within(1), within(2), tuple(within(k) for k in COVERAGE_MULTIPLES))
