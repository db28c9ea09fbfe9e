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

One scale is right on average and can be wrong by age (the first bundled model's teenagers were within
one std a third of the time). `StdBands` adds a factor per band of the *predicted* age (the true one is
unknown at predict time), fitted the same way on the validation faces of that band, on top of the scale; a
band with fewer than `MIN_BAND_FACES` validation faces keeps factor 1. Applied outside the network, in
numpy, by everything that turns outputs into ages (train's test predictions, predict), and carried by
best.pt and the exported file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

AGE_BANDS = (0.0, 13.0, 20.0, 40.0, 60.0, 101.0)  # predicted-age edges: 0–12, 13–19, 20–39, 40–59, 60+
MIN_BAND_FACES = 50  # validation faces a band needs for a factor of its own
FACTOR_RANGE = (0.1, 10.0)  # a band whose faces were all predicted exactly must not get a zero std


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


def fit_std_bands(mean: np.ndarray, std: np.ndarray, ages: np.ndarray, edges: tuple[float, ...] = AGE_BANDS,
                  min_faces: int = MIN_BAND_FACES) -> StdBands:
    """The factor of each predicted-age band by Gaussian likelihood on the faces of that band (as
    `std_scale`, from stds that already carry the scale); 1 for a band with fewer than `min_faces`."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    band = predicted_band(mean, edges)
    factors = []
    for b in range(len(edges) - 1):
        inside = band == b
        fitted = std_scale(mean[inside], std[inside], ages[inside]) if inside.sum() >= min_faces else 1.0
        factors.append(float(np.clip(fitted, *FACTOR_RANGE)))
    return StdBands(tuple(edges), tuple(factors))


def std_scale(mean: np.ndarray, std: np.ndarray, ages: np.ndarray) -> float:
    """The factor s on the std that maximises the Gaussian likelihood of `ages`: s² = mean((age − mean)² /
    std²) (faces with a zero std left out; 1 when none is left)."""
    mean, std, ages = (np.asarray(a, np.float64) for a in (mean, std, ages))
    usable = std > 0
    if not usable.any():
        return 1.0
    return float(np.sqrt(np.mean(((ages - mean)[usable] / std[usable]) ** 2)))
