"""Balanced draws: rare ages and small sources drawn more often by the power asked, the plain epoch
untouched, and the same generator state drawing the same rows (so a resumed epoch is exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceage.train.balance import balanced_rows, draw_weights, group_weights, path_sources


def _skewed() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """900 faces aged 25 (band 25–29) and 100 aged 70 (band 70–74), rows numbered 1000..1999; the first 800
    from source "big", the last 200 (100 of the 25-year-olds, all the 70-year-olds) from "small"."""
    ages = np.array([25.0] * 900 + [70.0] * 100)
    sources = np.array(["big"] * 800 + ["small"] * 200, dtype=object)
    return np.arange(1000, 2000), ages, sources


def test_age_weights_follow_the_power() -> None:
    _, ages, sources = _skewed()
    for power, old_share in ((0.0, 0.1), (0.5, 1 / (1 + 3)), (1.0, 0.5)):  # √900 : √100 = 3 : 1
        weights = draw_weights(ages, sources, power, 0.0)
        assert weights.sum() == pytest.approx(1.0)
        assert weights[ages == 70].sum() == pytest.approx(old_share)


def test_source_weights_follow_the_power_and_combine_with_the_ages() -> None:
    _, ages, sources = _skewed()
    assert group_weights(sources, 0.5)[sources == "small"].sum() == pytest.approx(1 / 3)  # √200 : √800
    assert draw_weights(ages, sources, 0.0, 1.0)[sources == "small"].sum() == pytest.approx(0.5)
    both = draw_weights(ages, sources, 1.0, 1.0)
    # per row: 25-year-old "big" 1/900·1/800, "small" 1/900·1/200, 70-year-old ("small") 1/100·1/200
    per_row = np.array([1 / 900 / 800] * 800 + [1 / 900 / 200] * 100 + [1 / 100 / 200] * 100)
    assert np.allclose(both, per_row / per_row.sum())


def test_named_sources_multiply_their_draw_weight_after_the_power() -> None:
    _, ages, sources = _skewed()
    alone = draw_weights(ages, sources, 0.0, 0.0, {"small": 3.0})  # 200·3 : 800·1
    assert alone[sources == "small"].sum() == pytest.approx(600 / 1400)
    balanced = draw_weights(ages, sources, 0.0, 1.0, {"small": 3.0, "absent": 5.0})  # 1·3 : 1·1
    assert balanced[sources == "small"].sum() == pytest.approx(0.75)
    assert np.array_equal(draw_weights(ages, sources, 0.5, 0.5, {}), draw_weights(ages, sources, 0.5, 0.5))


def test_sources_are_the_top_folders_of_the_paths() -> None:
    paths = np.array(["morph/a/1.jpg", "utkface/2.jpg", "3.jpg", "morph/4.jpg"])
    assert path_sources(paths).tolist() == ["morph", "utkface", "", "morph"]


def test_balanced_draw_evens_out_the_bands_and_repeats_with_the_generator() -> None:
    rows, ages, sources = _skewed()
    assert balanced_rows(rows, ages, sources, 0.0, 0.0, torch.Generator().manual_seed(1)) is rows
    one_source = np.full(len(rows), "", dtype=object)  # a flat manifest: nothing to balance
    assert balanced_rows(rows, ages, one_source, 0.0, 1.0, torch.Generator().manual_seed(1)) is rows
    drawn = balanced_rows(rows, ages, sources, 1.0, 0.0, torch.Generator().manual_seed(1))
    assert len(drawn) == len(rows) and set(drawn) <= set(rows)
    old = (drawn >= 1900).mean()  # rows 1900.. are the 70-year-olds
    assert 0.45 < old < 0.55, old
    again = balanced_rows(rows, ages, sources, 1.0, 0.0, torch.Generator().manual_seed(1))
    assert np.array_equal(drawn, again)
    other = balanced_rows(rows, ages, sources, 1.0, 0.0, torch.Generator().manual_seed(2))
    assert not np.array_equal(drawn, other)
    small = (balanced_rows(rows, ages, sources, 0.0, 1.0, torch.Generator().manual_seed(1)) >= 1800).mean()
    assert 0.45 < small < 0.55, small
    weighted = balanced_rows(rows, ages, sources, 0.0, 0.0, torch.Generator().manual_seed(1), {"small": 4.0})
    assert 0.45 < (weighted >= 1800).mean() < 0.55  # 200·4 : 800
