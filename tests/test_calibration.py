"""Calibration: the std scale fitted on validation faces makes an over-confident model's std honest and
leaves a calibrated one alone; it travels in checkpoints and in the exported graph (a run's folds:
test_train.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_predict import trained_run  # noqa: F401 - the run test_predict.py builds (once a session)

from faceage.evaluate.metrics import calibrate
from faceage.model.calibration import (
    FACTOR_EDGES,
    SMOOTHNESS_GRID,
    StdBands,
    choose_smoothness,
    fit_coverage,
    fit_std_bands,
    std_scale,
)
from faceage.model.network import build_model, from_probs
from faceage.predict.estimator import load_estimator
from faceage.predict.export import PARITY_TOLERANCE, check_faces, parity, write_onnx
from faceage.predict.info import ModelInfo, to_ages
from faceage.predict.torch_model import FoldEnsemble

AGES = torch.arange(101, dtype=torch.float64)


def _gaussian_logits(centres: torch.Tensor, std: float) -> torch.Tensor:
    """Logits whose softmax is a discretised Gaussian of `std` around each centre: (1, N, 101)."""
    return (-((AGES[None] - centres[:, None]) ** 2) / (2 * std**2))[None]


def test_the_std_scale_is_the_gaussian_likelihood_factor() -> None:
    mean, std, ages = np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, 0.0]), np.array([12.0, 14.0, 31.0])
    assert std_scale(mean, std, ages) == pytest.approx(np.sqrt((4 + 9) / 2))  # the zero-std face is left out


def test_the_std_scale_moves_coverage_to_the_target_and_leaves_the_mean_alone() -> None:
    g = np.random.default_rng(0)
    ages = g.integers(25, 75, 4000).astype(float)
    mean = ages + 6 * g.standard_normal(4000)  # errors of std 6, predicted std 3: over-confident
    std = np.full(4000, 3.0)
    s = std_scale(mean, std, ages)
    assert s == pytest.approx(2.0, rel=0.05)
    before, after = calibrate(mean, ages, std, "mean"), calibrate(mean, ages, s * std, "mean")
    assert before.within_1std < 0.45 and 0.62 < after.within_1std < 0.74 and 0.91 < after.within_2std < 0.97
    honest = np.full(4000, 6.0)
    assert std_scale(mean, honest, ages) == pytest.approx(1.0, abs=0.05)  # a calibrated model: left alone


def test_the_model_scales_its_std_and_old_checkpoints_load_with_scale_one() -> None:
    torch.manual_seed(0)
    model, _ = build_model("test_resnet", "mv")
    old = {k: v for k, v in model.state_dict().items() if k != "std_scale"}
    fresh, _ = build_model("test_resnet", "mv")
    fresh.load_state_dict(old)  # strict: the missing scale is filled in
    assert float(fresh.std_scale) == 1.0
    x = torch.randn(2, 3, 32, 32)
    fresh.eval()
    with torch.no_grad():
        plain = [fresh.predict(x, flip) for flip in (False, True)]
        fresh.std_scale.fill_(2.5)
        for flip, before in zip((False, True), plain, strict=True):
            after = fresh.predict(x, flip)
            assert torch.equal(after.mean, before.mean) and torch.equal(after.probs, before.probs)
            assert torch.allclose(after.std, 2.5 * before.std)


def test_the_std_scale_survives_export(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    members = [build_model("test_resnet", "mv")[0].eval() for _ in range(2)]
    for member, scale in zip(members, (1.5, 2.5), strict=True):
        member.std_scale.fill_(scale)
    info = ModelInfo("calibrated", "test_resnet", "mv", 56, 64, (0, 1), None, flip=True)
    ensemble = FoldEnsemble(members, flip=True)
    x = check_faces(load_estimator(trained_run, device="cpu").info, limit=4)
    write_onnx(ensemble, info, x[:2], tmp_path / "s.onnx", 18)
    assert parity(ensemble, info, x, tmp_path / "s.onnx", "cpu") < PARITY_TOLERANCE
    got = load_estimator(tmp_path / "s.onnx", device="cpu").estimate(x)
    assert got.probs is not None
    raw = from_probs(torch.from_numpy(got.probs).float())
    np.testing.assert_allclose(got.std, 2.0 * raw.std.numpy(), rtol=1e-4)  # the folds' mean scale


def test_a_factor_per_predicted_age_band_makes_every_band_honest() -> None:
    """The young over-confident (errors of std 6, predicted 2) and the old under-confident (errors 2,
    predicted 4): one scale fits neither; a factor per predicted-age band fits both."""
    g = np.random.default_rng(1)
    young, old = g.uniform(1, 12, 2000), g.uniform(41, 58, 2000)
    ages = np.concatenate([young, old])
    mean = ages + np.concatenate([6 * g.standard_normal(2000), 2 * g.standard_normal(2000)])
    std = np.concatenate([np.full(2000, 2.0), np.full(2000, 4.0)])
    bands = fit_std_bands(mean, std, ages)
    assert bands.edges == FACTOR_EDGES
    factor = dict(zip(bands.edges, bands.factors, strict=False))
    assert factor[5.0] > 2.0 and factor[45.0] < 0.7
    assert (mean < 70).all() and factor[70.0] == pytest.approx(factor[60.0], rel=0.03)  # no face: neighbour's
    _assert_every_band_honest(mean, ages, bands.apply(mean, std), [slice(0, 2000), slice(2000, 4000)])


def test_the_factors_aim_at_true_ages_where_a_predicted_band_mixes_them() -> None:
    """Teenagers read 4 years older land in the adults' predicted bands: a scale fitted per predicted band
    would see mostly adults; the fit on true-age shares widens those bands enough for the teenagers and
    narrows the adults' own."""
    g = np.random.default_rng(2)
    ages = np.concatenate([g.uniform(13, 20, 600), g.uniform(20, 40, 2400)])
    mean = ages + np.concatenate([4 + 2 * g.standard_normal(600), 4 * g.standard_normal(2400)])
    std = np.full(3000, 4.0)
    teens = slice(0, 600)
    assert calibrate(mean[teens], ages[teens], std[teens], "mean").within_1std < 0.5
    _assert_every_band_honest(mean, ages, fit_std_bands(mean, std, ages).apply(mean, std),
                              [teens, slice(600, 3000)])


def test_heavy_tailed_errors_keep_their_share_within_2_std() -> None:
    """Laplace errors: a factor putting 68.3 % within 1 std leaves about 90 % within 2 (a Gaussian: 95.4 %).
    The fit aims at both shares, so it gives a little of the first for the tails (1-std aim alone: 68.2 /
    90.1 % on these faces)."""
    g = np.random.default_rng(4)
    ages = g.uniform(1, 90, 4000)
    mean, std = ages + g.laplace(0, 3, 4000), np.full(4000, 3.0)
    shares = calibrate(mean, ages, fit_std_bands(mean, std, ages).apply(mean, std), "mean")
    assert 0.69 < shares.within_1std < 0.76 and shares.within_2std > 0.91


def test_the_smoothness_is_chosen_by_cross_validation() -> None:
    g = np.random.default_rng(3)
    ages = g.uniform(1, 80, 1500)
    mean, std = ages + 3 * g.standard_normal(1500), np.full(1500, 3.0)
    weight, losses = choose_smoothness(mean, std, ages)
    assert set(losses) == set(SMOOTHNESS_GRID) and weight in losses
    assert losses[weight] <= 1.1 * min(losses.values()) + 1e-12
    assert all(losses[w] > 1.1 * min(losses.values()) for w in losses if w > weight)  # the smoothest of those
    assert weight > 0  # ~100 faces per 5-year band: factors fitted without a penalty chase their noise
    honest = fit_coverage(mean, std, ages, weight)
    assert all(0.8 < f < 1.25 for f in honest.factors)  # a calibrated model's std: about left alone


def _assert_every_band_honest(mean: np.ndarray, ages: np.ndarray, std: np.ndarray,
                              parts: list[slice]) -> None:
    for part in parts:
        share = calibrate(mean[part], ages[part], std[part], "mean").within_1std
        assert 0.6 < share < 0.76, share  # the second edition's aim for every band


def test_std_bands_round_trip_and_refuse_a_malformed_record() -> None:
    bands = StdBands((0.0, 20.0, 101.0), (2.0, 0.5))
    assert StdBands.from_record(bands.to_record()) == bands
    with pytest.raises(ValueError):
        StdBands((0.0, 50.0), (1.0, 2.0))  # one edge short


def test_predict_applies_the_bands_a_model_carries() -> None:
    info = ModelInfo("m", "test_resnet", "mv", 56, 64, (0,), None,
                     std_bands=StdBands((0.0, 20.0, 101.0), (2.0, 0.5)))
    probs = np.zeros((2, 101))
    ages = to_ages([probs, np.array([10.0, 50.0]), np.array([3.0, 3.0])], info)
    np.testing.assert_allclose(ages.std, [6.0, 1.5])
