"""Calibration of the predicted uncertainty: a scale on the std, fitted on validation faces.

A model trained with the mean-variance loss is over-confident: its variance term rewards narrow
distributions, so fewer faces lie within one predicted std of their age than a Gaussian's 68.3 %. The std
scale s multiplies every predicted std; it is fitted by Gaussian likelihood on the fold's validation rows
only (never its test rows): s² = mean((age − mean)² / std²). It leaves the mean, and so the MAE, untouched,
and lives in the model (`AgeModel.std_scale`), so the fold's predictions, `predict` and the exported graph
all apply it; the age distribution itself (`probs`) stays the network's own.

A softmax temperature (dividing the logits by T) was measured against it and reached the same coverage,
but by flattening the distribution's tails it pulled the mean towards the middle of 0..100 and cost MAE
(on the first bundled model's held-out faces: +0.16 years against none), so only the scale is fitted.

One scale is right on average and can be wrong by age (the first bundled model's teenagers were within one std
a third of the time). `StdBands` adds a factor per band of the *predicted* age (the true one is unknown at
predict time) on top of the scale. The factors are fitted on the validation faces for what the std promises:
that about 68.3 % of the faces of every *true*-age band lie within 1 std of their age, and 95.4 % within 2.
Fitted on the first share alone, the factors had more freedom than aims: on the second bundled model they
swung from 0.30 to 3.36 between neighbouring bands and took its validation teenagers to 78 % within 2 std; the
second share holds the tails (held-out: every band 62–74 % within 1 std, 90–96 % within 2). A factor by
Gaussian likelihood per predicted band was measured first and changed little: a band's likelihood answers
heavy-tailed errors with a wide std, and a predicted band mixes true ages (teenagers read as twenty-year-olds
sit in the twenties' band). The fit is a coordinate search over a log grid of factors on the squared misses of
the true-age bands' two shares, plus a penalty on jumps between neighbouring factors whose weight is chosen by
cross-validation on the same validation faces. Applied outside the network, in numpy, by everything that turns
outputs into ages (train's test predictions, predict), and carried by best.pt and the exported file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

FACTOR_EDGES = (*(float(e) for e in range(0, 61, 5)), 70.0, 101.0)  # predicted ages: a factor per band
TRUE_AGE_EDGES = (0.0, 13.0, 20.0, 40.0, 60.0, 80.0)  # true ages whose shares are fitted: 0–12, …, 80+
MIN_BAND_FACES = 50  # validation faces a true-age band needs to count in the fit
COVERAGE_TARGET = math.erf(1 / math.sqrt(2))  # a Gaussian's share within 1 std, 68.3 %
COVERAGE_TARGET_2STD = math.erf(2 / math.sqrt(2))  # and within 2 std, 95.4 %
FACTOR_GRID = np.exp(np.log(4.0) * np.arange(-48, 49) / 48)  # factors tried, 1/4 to 4, 2.9 % apart
SMOOTHNESS_GRID = (0.0, 0.001, 0.003, 0.01, 0.03, 0.1)  # weights of the penalty on jumps, tried by CV
SWEEPS = 8  # rounds of the coordinate search


@dataclass(frozen=True)
class StdBands:
    """A factor on the std per predicted-age band [edges[i], edges[i + 1])."""

    edges: tuple[float, ...]
    factors: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.edges) != len(self.factors) + 1 or list(self.edges) != sorted(self.edges) or not all(
                f > 0 and np.isfinite(f) for f in self.factors):
            raise ValueError(f"std bands need increasing edges, one more than positive finite factors: "
                             f"{self.edges}, {self.factors}")

    def apply(self, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        """`std` times the factor of each face's predicted-age band (faces outside the edges: the nearest)."""
        return np.asarray(std, np.float64) * np.asarray(self.factors)[predicted_band(mean, self.edges)]

    def to_record(self) -> dict[str, Any]:
        return {"edges": list(self.edges), "factors": list(self.factors)}

    @classmethod
    def from_record(cls, record: Any) -> StdBands:
        """From `to_record`'s dict (in best.pt or an exported file's metadata); ValueError when malformed."""
        if not isinstance(record, dict):
            raise ValueError(f"std bands must be a mapping, not {type(record).__name__}")
        return cls(tuple(float(e) for e in record["edges"]), tuple(float(f) for f in record["factors"]))


def predicted_band(mean: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Each predicted age's band index in [edges[i], edges[i + 1]); ages outside the edges: the nearest."""
    return np.clip(np.searchsorted(edges, np.asarray(mean, np.float64), side="right") - 1, 0, len(edges) - 2)


def fit_std_bands(mean: np.ndarray, std: np.ndarray, ages: np.ndarray, folds: int = 5) -> StdBands:
    """Factors per predicted-age band (`FACTOR_EDGES`) on stds that already carry the scale, fitted so that
    every true-age band with `MIN_BAND_FACES` faces has about 68.3 % of them within 1 std and 95.4 % within
    2; the penalty on jumps between neighbouring factors is the one `choose_smoothness` picks."""
    return fit_coverage(mean, std, ages, choose_smoothness(mean, std, ages, folds)[0])


def fit_coverage(mean: np.ndarray, std: np.ndarray, ages: np.ndarray, smoothness: float,
                 min_faces: int = MIN_BAND_FACES) -> StdBands:
    """The factors minimising Σ (share within 1 std − 68.3 %)² + (share within 2 std − 95.4 %)² over the
    true-age bands with `min_faces` faces, plus `smoothness` · Σ (Δ log factor)² over neighbouring bands and
    a small pull of each log factor to 0 (a band without faces follows its neighbours, or keeps 1 without
    the penalty): a coordinate search over `FACTOR_GRID`, deterministic."""
    ratio, band, true_band = _fit_inputs(mean, std, ages)
    faces = np.bincount(true_band, minlength=len(TRUE_AGE_EDGES))
    counted = faces >= min_faces
    log_grid, log_f = np.log(FACTOR_GRID), np.zeros(len(FACTOR_EDGES) - 1)
    for _ in range(SWEEPS):
        for b in range(len(log_f)):
            mine = band == b
            others = _within(true_band[~mine], ratio[~mine], np.exp(log_f[band[~mine]]), len(counted))
            ratio_mine, true_mine = ratio[mine], true_band[mine]
            losses = []
            for g in log_grid:
                within = others + _within(true_mine, ratio_mine, np.exp(g), len(counted))
                losses.append(_loss(within, faces, counted) + _penalty(np.r_[log_f[:b], g, log_f[b + 1:]],
                                                                       smoothness))
            log_f[b] = log_grid[int(np.argmin(losses))]
    return StdBands(FACTOR_EDGES, tuple(float(f) for f in np.exp(log_f)))


def choose_smoothness(mean: np.ndarray, std: np.ndarray, ages: np.ndarray, folds: int = 5,
                      seed: int = 0) -> tuple[float, dict[float, float]]:
    """The penalty weight by `folds`-fold cross-validation on these faces (fit on the others, apply to the
    fold): each weight's loss on the out-of-fold stds, and the smoothest weight within 10 % of the lowest
    loss. Returns it with every weight's loss."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    fold = np.random.default_rng(seed).permutation(len(mean)) % folds
    true_band = _fit_inputs(mean, std, ages)[2]
    faces = np.bincount(true_band, minlength=len(TRUE_AGE_EDGES))
    counted = faces >= MIN_BAND_FACES
    losses = {}
    for smoothness in SMOOTHNESS_GRID:
        fitted = np.empty(len(mean))
        for k in range(folds):
            rest, held = fold != k, fold == k
            bands = fit_coverage(mean[rest], std[rest], ages[rest], smoothness,
                                 MIN_BAND_FACES * (folds - 1) // folds)
            fitted[held] = bands.apply(mean[held], std[held])
        within = _within(true_band, _fit_inputs(mean, fitted, ages)[0], 1.0, len(counted))
        losses[smoothness] = _loss(within, faces, counted)
    lowest = min(losses.values())
    return max(w for w, loss in losses.items() if loss <= 1.1 * lowest + 1e-12), losses


def _fit_inputs(mean: np.ndarray, std: np.ndarray, ages: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                               np.ndarray]:
    """|age − mean| / std (inf where std is 0), each face's predicted band and its true-age band."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(std > 0, np.abs(ages - mean) / std, np.inf)
    true_band = predicted_band(ages, (*TRUE_AGE_EDGES, math.inf))  # the same lookup, on the true ages
    return ratio, predicted_band(mean, FACTOR_EDGES), true_band


def _within(true_band: np.ndarray, ratio: np.ndarray, factor: np.ndarray | float, bands: int) -> np.ndarray:
    """Faces per true-age band within 1 and 2 stds times `factor` (2, bands), from |age − mean| / std."""
    return np.stack([np.bincount(true_band[ratio <= k * factor], minlength=bands) for k in (1, 2)])


def _loss(within: np.ndarray, faces: np.ndarray, counted: np.ndarray) -> float:
    """Σ over the counted true-age bands of the squared misses of the shares within 1 and 2 std (68.3 and
    95.4 %), from `_within`'s counts and all faces per band."""
    shares = within[:, counted] / faces[counted]
    return float(np.sum((shares[0] - COVERAGE_TARGET) ** 2) + np.sum((shares[1] - COVERAGE_TARGET_2STD) ** 2))


def _penalty(log_factors: np.ndarray, smoothness: float) -> float:
    """The cost of jumps between neighbouring factors, and a pull to 1 that only breaks ties."""
    return smoothness * float(np.sum(np.diff(log_factors) ** 2)) + 1e-6 * float(np.sum(log_factors**2))


def std_scale(mean: np.ndarray, std: np.ndarray, ages: np.ndarray) -> float:
    """The factor s on the std that maximises the Gaussian likelihood of `ages`: s² = mean((age − mean)² /
    std²) (faces with a zero std left out; 1 when none is left)."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    usable = std > 0
    if not usable.any():
        return 1.0
    return float(np.sqrt(np.mean(((ages - mean)[usable] / std[usable]) ** 2)))
