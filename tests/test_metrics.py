"""Metrics against values worked out by hand: ties at θ, .5 predictions, σ = 0, groups, folds, calibration."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faceage.evaluate.folds import per_fold, summarize_folds
from faceage.evaluate.metrics import (
    abs_errors,
    calibrate,
    cumulative_score,
    epsilon_error,
    mae,
    per_decade,
    per_group,
)
from faceage.evaluate.registry import Spread
from faceage.evaluate.summary import summarize

AGE = [20, 30, 40, 50]
PRED = [20, 35, 34, 60]  # errors 0, 5, 6, 10


def test_mae_and_cs_count_ties_at_theta() -> None:
    assert mae(PRED, AGE) == 5.25  # (0 + 5 + 6 + 10) / 4
    cs = cumulative_score(PRED, AGE, max_theta=20)
    assert len(cs) == 21
    assert cs[0] == 0.25 and cs[4] == 0.25
    assert cs[5] == 0.5  # the error of exactly 5 counts at θ = 5
    assert cs[6] == 0.75 and cs[9] == 0.75
    assert cs[10] == 1.0 and cs[20] == 1.0


def test_cs_tie_survives_float_noise() -> None:
    assert abs_errors([10.3], [5.3])[0] > 5  # 5.000000000000001 in binary floating point
    assert cumulative_score([10.3], [5.3], max_theta=5)[5] == 1.0


def test_half_year_predictions_are_used_as_given() -> None:
    # pred 2.5 for age 2 and 22.5 for 23: no re-rounding, both errors are 0.5
    assert mae([2.5, 22.5], [2, 23]) == 0.5
    assert cumulative_score([2.5, 22.5], [2, 23], max_theta=1).tolist() == [0.0, 1.0]


def test_cs_is_non_decreasing_and_reaches_one() -> None:
    rng = np.random.default_rng(5)
    age = rng.uniform(0, 100, 500)
    pred = np.clip(age + rng.normal(0, 8, 500), 0, None)
    cs = cumulative_score(pred, age, max_theta=int(np.ceil(np.abs(pred - age).max())))
    assert np.all(np.diff(cs) >= 0)
    assert cs[-1] == 1.0 and cs[0] < 1.0


def test_epsilon_error_by_hand_with_sigma_zero_and_unknown_sigma() -> None:
    pred = [20, 25, 30, 31, 50]
    mu = [20, 20, 30, 30, 10]
    sigma = [5, 5, 0, 0, math.nan]
    # scores: 0, 1 − exp(−25/50), 0 (σ = 0, exact hit), 1 (σ = 0, miss); the NaN-σ row is left out
    result = epsilon_error(pred, mu, sigma)
    assert result.value == pytest.approx((1 - math.exp(-0.5) + 1) / 4, abs=1e-12)
    assert result.value == pytest.approx(0.3483673350718, abs=1e-12)
    assert result.n == 4 and result.n_sigma_zero == 2


def test_epsilon_error_without_any_sigma_is_none() -> None:
    result = epsilon_error([20, 30], [21, 30], [math.nan, math.nan])
    assert result.value is None and result.n == 0 and result.n_sigma_zero == 0


def test_age_groups_by_hand() -> None:
    age = [5, 19.5, 20, 45, 85]
    pred = [7, 19.5, 18, 50, 80]
    groups = {g.label: g for g in per_group(pred, age)}
    assert list(groups) == ["0–19", "20–39", "40–59", "60–79", "80+"]
    assert (groups["0–19"].n, groups["0–19"].mae, groups["0–19"].bias) == (2, 1.0, 1.0)
    assert (groups["20–39"].n, groups["20–39"].mae, groups["20–39"].bias) == (1, 2.0, -2.0)
    assert (groups["40–59"].mae, groups["40–59"].bias) == (5.0, 5.0)
    assert (groups["60–79"].n, groups["60–79"].mae, groups["60–79"].bias) == (0, None, None)
    assert (groups["80+"].n, groups["80+"].mae, groups["80+"].bias) == (1, 5.0, -5.0)
    bands = per_group(pred, age, groups=(("0–12", 0, 13), ("13+", 13, math.inf)))
    assert [(g.label, g.n, g.mae, g.bias) for g in bands] == [("0–12", 1, 2.0, 2.0), ("13+", 4, 3.0, -0.5)]
    decades = per_decade(pred, age)
    assert [(d.label, d.n) for d in decades] == [("0–9", 1), ("10–19", 1), ("20–29", 1), ("40–49", 1),
                                                 ("80–89", 1)]


def test_folds_and_their_sample_std() -> None:
    age = [10, 10, 20, 20, 30]
    pred = [10, 16, 21, 22, 34]  # fold 0: errors 0, 6; fold 1: 1, 2; fold 2: 4
    folds = per_fold(pred, age, [0, 0, 1, 1, 2], train_median=[16, 16, 14, 14, 20])
    assert [(f.fold, f.n, f.scores) for f in folds] == [  # median baseline: |16 − age|, |14 − age|, |20 − 30|
        (0, 2, {"mae": 3.0, "cs5": 0.5, "median_mae": 6.0}),
        (1, 2, {"mae": 1.5, "cs5": 1.0, "median_mae": 6.0}),
        (2, 1, {"mae": 4.0, "cs5": 1.0, "median_mae": 10.0}),
    ]
    assert per_fold(pred, age, [0, 0, 1, 1, 2])[0].scores["median_mae"] is None  # not recorded: unknown
    assert folds[0].mae == 3.0
    s = summarize_folds(folds)
    assert s.n_folds == 3 and s.spreads["mae"].mean == pytest.approx(17 / 6)
    # sample std (ddof = 1) of 3, 1.5, 4: sqrt(((1/6)² + (4/3)² + (7/6)²) / 2) = sqrt(19/12)
    assert s.spreads["mae"].std == pytest.approx(math.sqrt(19 / 12))
    assert s.spreads["cs5"].mean == pytest.approx(2.5 / 3)
    assert summarize_folds(folds[:1]).spreads["mae"] == Spread(3.0, None)


def test_calibration_counts_errors_within_one_and_two_std() -> None:
    # errors 0, 2, 0.5 against stds 1, 1, 0.5: within 1 std for rows 1 and 3 (tie), within 2 std for all
    c = calibrate([20, 22, 30.5], [20, 20, 30], [1, 1, 0.5], "mean")
    assert c.center == "mean"
    assert c.within_1std == pytest.approx(2 / 3) and c.within_2std == 1.0


def test_summarize_switches_on_optional_columns() -> None:
    bare = summarize(AGE, PRED)
    assert bare.n == 4 and bare.scores == {"mae": 5.25, "mae_unrounded": None, "cs5": 0.5, "eps": None,
                                           "median_mae": None}
    assert bare.epsilon.value is None
    assert bare.per_fold is None and bare.fold_summary is None and bare.calibration is None
    full = summarize(AGE, PRED, mean=[20.4, 34.6, 34.2, 59.5], std=[1, 1, 1, 1], age_std=[1, 1, 1, 1],
                     fold=[0, 0, 1, 1], max_theta=5)
    assert len(full.cs) == 6
    assert full.scores["mae_unrounded"] == pytest.approx((0.4 + 4.6 + 5.8 + 9.5) / 4)
    eps = 1 - np.mean(np.exp(-np.array([0, 25, 36, 100]) / 2))  # σ = 1 each
    assert full.scores["eps"] == full.epsilon.value == pytest.approx(eps)
    assert full.calibration is not None and full.calibration.center == "mean"
    assert full.calibration.within_1std == 0.25  # only |20.4 − 20| ≤ 1
    assert full.fold_summary is not None and full.fold_summary.n_folds == 2
    assert summarize(AGE, PRED, mean=AGE, std=[0, 0, 0, 0]).calibration is None  # L2 model: no uncertainty
    no_mean = summarize(AGE, PRED, std=[6, 6, 6, 6])
    assert no_mean.calibration is not None and no_mean.calibration.center == "pred"
    assert no_mean.calibration.within_1std == 0.75


def test_chalearn_labels_have_five_zero_sigmas(chalearn_dir: Path) -> None:
    labels = pd.read_csv(chalearn_dir / "labels.csv")
    mu = labels["apparent_age_mean_rounded"].to_numpy(float)
    sigma = labels["apparent_age_std"].to_numpy(float)
    exact = epsilon_error(mu, mu, sigma)
    assert exact.value == 0.0 and exact.n == 1400 and exact.n_sigma_zero == 5
    off = epsilon_error(mu + 1, mu, sigma)
    positive = sigma[sigma > 0]
    expected = (5 * 1.0 + np.sum(1 - np.exp(-1 / (2 * positive**2)))) / 1400
    assert off.value == pytest.approx(expected, rel=1e-12)


def test_each_age_group_says_whether_its_uncertainty_is_honest() -> None:
    """Within 1 / 2 predicted stds per true-age group: an over-confident group shows it even when the
    overall share looks right."""
    age = [10, 12, 14, 16, 30, 32, 34, 36]
    mean = [11, 14, 17, 20, 30.5, 32.5, 33.5, 35.5]  # the young off by 1..4 years, the 30s by 0.5
    std = [1.0] * 8
    m = summarize(age, np.round(mean), mean=mean, std=std)
    young, older = m.per_group[0], m.per_group[1]
    assert (young.label, young.n, young.within_1std, young.within_2std) == ("0–19", 4, 0.25, 0.5)
    assert (older.n, older.within_1std, older.within_2std) == (4, 1.0, 1.0)
    assert m.per_group[4].within_1std is None  # an empty group
    assert summarize(age, np.round(mean)).per_group[0].within_1std is None  # no std: no shares
