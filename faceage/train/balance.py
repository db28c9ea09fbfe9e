"""Age-balanced draws of a fold's training rows, the common answer to skewed age distributions: faces of
rare ages (the old, children) are drawn more often, so the network does not learn to read every face
towards the crowded middle.

Each epoch draws as many rows as the training part holds, with replacement, each with probability
proportional to (faces in its `BAND_YEARS`-year age band)^-power: power 0 keeps the plain epoch (every row
once, no draw), 0.5 is square-root balancing, 1 makes every band equally likely. The draw comes from the
fold's generator at the start of the epoch, so a resumed epoch draws the same rows.
"""

from __future__ import annotations

import numpy as np
import torch

BAND_YEARS = 5


def band_weights(ages: np.ndarray, power: float) -> np.ndarray:
    """Each age's draw weight, (faces in its age band)^-power, normalised to sum to 1."""
    bands = np.floor(np.asarray(ages, dtype=np.float64) / BAND_YEARS).astype(np.int64)
    _, inverse, counts = np.unique(bands, return_inverse=True, return_counts=True)
    weights = counts[inverse].astype(np.float64) ** -power
    return weights / weights.sum()


def balanced_rows(rows: np.ndarray, ages: np.ndarray, power: float, generator: torch.Generator) -> np.ndarray:
    """`rows` themselves for power 0, else len(rows) of them drawn with replacement by `band_weights`."""
    if power == 0 or len(rows) == 0:
        return rows
    weights = torch.from_numpy(band_weights(ages, power)).to(generator.device)
    drawn = torch.multinomial(weights, len(rows), replacement=True, generator=generator)
    return np.asarray(rows)[drawn.cpu().numpy()]
