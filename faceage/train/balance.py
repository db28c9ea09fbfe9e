"""Balanced draws of a fold's training rows, the common answer to skewed training data: faces of rare ages
(the old, children) and of small sources (one dataset among larger ones) are drawn more often, so the
network neither reads every face towards the crowded middle nor learns mostly the largest source's faces.

Each epoch draws as many rows as the training part holds, with replacement, each with probability
proportional to (faces in its `BAND_YEARS`-year age band)^-age_power × (faces from its source)^-source_power
× its source's weight (`source_weights`, "morph=2": more of one source than the power alone gives; 1 for a
source not named). A row's source is the top folder of its manifest path (`morph/…`, `utkface/…`; every row
of a flat manifest shares one). Power 0 keeps the plain epoch (every row once, no draw), 0.5 is square-root
balancing, 1 makes every band (or source) equally likely. The draw comes from the fold's generator at the
start of the epoch, so a resumed epoch draws the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

BAND_YEARS = 5


def group_weights(keys: np.ndarray, power: float) -> np.ndarray:
    """Each row's weight, (rows sharing its key)^-power, normalised to sum to 1."""
    _, inverse, counts = np.unique(np.asarray(keys), return_inverse=True, return_counts=True)
    weights = counts[inverse.reshape(-1)].astype(np.float64) ** -power
    return weights / weights.sum()


def path_sources(paths: np.ndarray) -> np.ndarray:
    """Each manifest path's source: its top folder ("" for a file at the top of the image folder)."""
    return np.array([p.split("/", 1)[0] if "/" in p else "" for p in paths], dtype=object)


def age_bands(ages: np.ndarray) -> np.ndarray:
    """Each age's `BAND_YEARS`-year band (0 for 0–4, 1 for 5–9, …)."""
    return np.floor(np.asarray(ages, dtype=np.float64) / BAND_YEARS).astype(np.int64)


def draw_weights(ages: np.ndarray, sources: np.ndarray, age_power: float, source_power: float,
                 source_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """Each row's draw probability: the age bands' and the sources' weights multiplied by the named sources'
    own weights, normalised."""
    weights = group_weights(age_bands(ages), age_power) * group_weights(sources, source_power)
    if source_weights:
        weights = weights * np.array([source_weights.get(s, 1.0) for s in sources], dtype=np.float64)
    return weights / weights.sum()


def balanced_rows(rows: np.ndarray, ages: np.ndarray, sources: np.ndarray, age_power: float,
                  source_power: float, generator: torch.Generator,
                  source_weights: Mapping[str, float] | None = None) -> np.ndarray:
    """len(rows) of `rows` drawn with replacement by `draw_weights`; `rows` themselves (the plain epoch)
    when the weights are all equal (both powers 0 and no source weighted, or one band and one source)."""
    if len(rows) == 0:
        return rows
    weights = draw_weights(ages, sources, age_power, source_power, source_weights)
    if np.allclose(weights, weights[0], rtol=1e-9, atol=0):
        return rows
    drawn = torch.multinomial(torch.from_numpy(weights).to(generator.device), len(rows), replacement=True,
                              generator=generator)
    return np.asarray(rows)[drawn.cpu().numpy()]
