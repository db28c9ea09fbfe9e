"""Age-balanced draws: rare ages drawn more often by the power asked, the plain epoch untouched, and the
same generator state drawing the same rows (so a resumed epoch is exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceage.train.balance import balanced_rows, band_weights


def _skewed() -> tuple[np.ndarray, np.ndarray]:
    """900 faces aged 25 (band 25–29) and 100 aged 70 (band 70–74), rows numbered 1000..1999."""
    ages = np.array([25.0] * 900 + [70.0] * 100)
    return np.arange(1000, 2000), ages


def test_band_weights_follow_the_power() -> None:
    _, ages = _skewed()
    for power, old_share in ((0.0, 0.1), (0.5, 1 / (1 + 3)), (1.0, 0.5)):  # √900 : √100 = 3 : 1
        weights = band_weights(ages, power)
        assert weights.sum() == pytest.approx(1.0)
        assert weights[ages == 70].sum() == pytest.approx(old_share)


def test_balanced_draw_evens_out_the_bands_and_repeats_with_the_generator() -> None:
    rows, ages = _skewed()
    assert balanced_rows(rows, ages, 0.0, torch.Generator().manual_seed(1)) is rows
    drawn = balanced_rows(rows, ages, 1.0, torch.Generator().manual_seed(1))
    assert len(drawn) == len(rows) and set(drawn) <= set(rows)
    old = (drawn >= 1900).mean()  # rows 1900.. are the 70-year-olds
    assert 0.45 < old < 0.55, old
    again = balanced_rows(rows, ages, 1.0, torch.Generator().manual_seed(1))
    assert np.array_equal(drawn, again)
    assert not np.array_equal(drawn, balanced_rows(rows, ages, 1.0, torch.Generator().manual_seed(2)))
