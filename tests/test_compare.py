"""faceage.evaluate.compare on small synthetic prediction tables, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from faceage.core.errors import FaceageError
from faceage.evaluate.compare import (
    Member,
    compare_groups,
    compare_pair,
    paired_difference,
    unit_ids,
    verdict,
)
from faceage.evaluate.registry import Spread


def _table(errors: list[float] | np.ndarray, subjects: list[str] | None = None,
           age_std: list[float] | None = None) -> pd.DataFrame:
    """Predictions of len(errors) images aged 40 whose prediction is 40 + error."""
    n = len(errors)
    table = pd.DataFrame({"path": [f"{i:04d}.jpg" for i in range(n)], "age": 40.0,
                          "pred": 40.0 + np.asarray(errors, dtype=float),
                          "subject": subjects if subjects is not None else [""] * n})
    if age_std is not None:
        table["age_std"] = age_std
    return table


def test_group_summary_is_mean_and_sample_std_over_seeds() -> None:
    # seed 0 errors 1, 2, 3, 6 → MAE 3, CS@5 0.75; seed 1 errors 2, 3, 4, 7 → MAE 4, CS@5 0.75
    members = [Member("mv-s0", 0, _table([1, -2, 3, 6], age_std=[1, 1, 1, 1])),
               Member("mv-s1", 1, _table([2, 3, -4, 7], age_std=[1, 1, 1, 1]))]
    other = [Member("l2-s0", 0, _table([0, 0, 0, 0], age_std=[1, 1, 1, 1]))]
    result = compare_groups({"mv": members, "l2": other}, resamples=200)
    mv = result.groups["mv"]
    assert [r.scores["mae"] for r in mv.runs] == [3.0, 4.0]
    assert mv.spreads["mae"].mean == 3.5 and mv.spreads["mae"].std == pytest.approx(np.sqrt(0.5))  # ddof = 1
    assert mv.spreads["cs5"] == Spread(0.75, 0.0)
    eps0 = 1 - np.mean(np.exp(-np.array([1, 4, 9, 36]) / 2))
    eps1 = 1 - np.mean(np.exp(-np.array([4, 9, 16, 49]) / 2))
    assert mv.spreads["eps"].mean == pytest.approx((eps0 + eps1) / 2)
    assert mv.spreads["eps"].std == pytest.approx(abs(eps0 - eps1) / np.sqrt(2))
    assert result.groups["l2"].spreads["mae"] == Spread(0.0, None)  # one run: no std
    assert result.groups["l2"].spreads["eps"] == Spread(0.0, None)
    (pair,) = result.pairs
    assert (pair.a, pair.b) == ("mv", "l2") and pair.mae_diff == 3.5
    assert result.to_dict()["losses"]["mv"]["runs"][1] == {"seed": 1, "run": "mv-s1", "mae": 4.0,
                                                           "cs5": 0.75, "eps": pytest.approx(eps1)}


def test_difference_uses_the_images_every_run_has() -> None:
    a = _table([1, 1, 1, 9])  # image 3 is missing from b's second run
    b1, b2 = _table([2, 2, 2, 2]), _table([3, 3, 3, 0]).iloc[:3]
    pair = compare_pair("a", [Member("a", 0, a)], "b", [Member("b1", 0, b1), Member("b2", 1, b2)],
                        resamples=200)
    assert pair.n_images == 3 and pair.mae_diff == pytest.approx(1 - 2.5)


def test_permutation_p_value_is_exact_for_few_units() -> None:
    # unit differences 1, 2, 3: of the 8 sign flips, only +6 and −6 are as extreme as the observed 6
    diff, ci, p = paired_difference(np.array([[1.0, 2.0, 3.0]]), np.zeros((1, 3)), np.arange(3))
    assert diff == 2.0 and p == pytest.approx(0.25)
    assert ci[0] >= 1.0 and ci[1] <= 3.0  # a bootstrap mean of 1, 2, 3 stays within them


def test_known_difference_lies_inside_its_interval_and_is_decided() -> None:
    rng = np.random.default_rng(3)
    base = rng.gamma(2.0, 2.0, 500)
    runs_a = [Member(f"mv-s{s}", s, _table(base + rng.normal(0, 0.3, 500))) for s in range(3)]
    runs_b = [Member(f"sm-s{s}", s, _table(base + 0.5 + rng.normal(0, 0.3, 500))) for s in range(3)]
    pair = compare_pair("mv", runs_a, "softmax", runs_b)
    assert pair.mae_diff == pytest.approx(-0.5, abs=0.05)
    assert pair.ci95[0] < -0.5 < pair.ci95[1] and pair.ci95[1] < 0
    assert pair.p_value < 0.001
    lo, hi = pair.ci95
    assert pair.verdict == (f"mv beats softmax by {-pair.mae_diff:.2f} y "
                            f"(95 % CI {-hi:.2f}–{-lo:.2f}, p < 0.001)")


def test_no_difference_gives_a_large_p_value() -> None:
    # every unit's difference has a mirror: the observed sum is 0, as extreme as any flip → p = 1
    d = np.array([0.5, -0.5, 2.0, -2.0, 1.0, -1.0])
    diff, ci, p = paired_difference(np.array([3.0 + d]), np.full((1, 6), 3.0), np.arange(6))
    assert diff == 0.0 and p == 1.0 and ci[0] < 0 < ci[1]
    # b errs on each image as a does on another one, 0.02 y more: an MAE difference of exactly −0.02,
    # tiny next to the spread of the per-image differences (≈ 2.8 y / √400 = 0.14 y)
    rng = np.random.default_rng(7)
    errors = [rng.gamma(2.0, 2.0, 400) for _ in range(2)]
    a = [Member(f"a{s}", s, _table(e)) for s, e in enumerate(errors)]
    b = [Member(f"b{s}", s, _table(rng.permutation(e) + 0.02)) for s, e in enumerate(errors)]
    pair = compare_pair("mv", a, "l2", b)
    assert pair.mae_diff == pytest.approx(-0.02)
    assert pair.p_value > 0.2 and pair.ci95[0] < 0 < pair.ci95[1]
    assert pair.verdict.startswith("no difference detectable at this size (mv − l2 = ")


def test_subjects_sharing_errors_widen_the_interval() -> None:
    rng = np.random.default_rng(5)
    n_subjects, faces = 60, 8
    shared = np.repeat(rng.normal(0.0, 2.0, n_subjects), faces)  # each person's faces err alike
    subjects = [f"p{i // faces}" for i in range(n_subjects * faces)]
    base = rng.gamma(2.0, 2.0, n_subjects * faces)
    a = _table(base, subjects)
    b = _table(base + 0.2 + shared + rng.normal(0, 0.2, base.size), subjects)
    by_subject = compare_pair("a", [Member("a", 0, a)], "b", [Member("b", 0, b)])
    as_images = compare_pair("a", [Member("a", 0, a.assign(subject=""))],
                             "b", [Member("b", 0, b.assign(subject=""))])
    assert by_subject.n_units == n_subjects and as_images.n_units == n_subjects * faces
    assert by_subject.mae_diff == pytest.approx(as_images.mae_diff)
    width = by_subject.ci95[1] - by_subject.ci95[0]
    assert width > 2 * (as_images.ci95[1] - as_images.ci95[0])  # ≈ √8 wider


def test_seed_spread_widens_the_interval() -> None:
    errors = np.tile([1.0, 2.0, 3.0, 4.0], 50)
    same = [Member(f"s{s}", s, _table(errors + 1)) for s in range(3)]
    spread = [Member(f"s{s}", s, _table(errors + shift)) for s, shift in enumerate((0.0, 1.0, 2.0))]
    b = [Member("b", 0, _table(errors))]
    tight, wide = compare_pair("a", same, "b", b), compare_pair("a", spread, "b", b)
    assert tight.mae_diff == wide.mae_diff == pytest.approx(1.0)
    assert tight.ci95 == pytest.approx((1.0, 1.0))  # no image- or seed-level noise at all
    assert wide.ci95[0] <= 1 / 3 + 1e-9 and wide.ci95[1] >= 5 / 3 - 1e-9  # seeds drawn with replacement


def test_units_are_subjects_or_single_images() -> None:
    table = pd.DataFrame({"path": ["a", "b", "c", "d"], "subject": ["x", None, "x", ""]})
    units = unit_ids(table)
    assert units[0] == units[2] and len({units[0], units[1], units[3]}) == 3


def test_verdict_lines() -> None:
    assert verdict("mv", "softmax", -0.2, (-0.28, -0.12), 0.003) == \
        "mv beats softmax by 0.20 y (95 % CI 0.12–0.28, p = 0.003)"
    assert verdict("mv", "l2", 0.3, (0.1, 0.5), 0.0004) == \
        "l2 beats mv by 0.30 y (95 % CI 0.10–0.50, p < 0.001)"
    assert verdict("mv", "l2", 0.1, (-0.1, 0.3), 0.4).startswith("no difference detectable at this size")


def test_refusals() -> None:
    with pytest.raises(FaceageError, match="share no test image"):
        compare_pair("a", [Member("a", 0, _table([1, 2]))], "b",
                     [Member("b", 0, _table([1, 2]).assign(path=["x", "y"]))])
    with pytest.raises(FaceageError, match="different ages"):
        compare_pair("a", [Member("a", 0, _table([1, 2]))], "b",
                     [Member("b", 0, _table([1, 2]).assign(age=30.0))])
    with pytest.raises(FaceageError, match="hold no run"):
        compare_groups({"mv": []})
