"""Calibration: the temperature fitted on validation faces makes an over-confident model's std honest,
leaves a calibrated one alone, and travels in checkpoints and in the exported graph (a run's folds:
test_train.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from test_predict import trained_run  # noqa: F401 - the run test_predict.py builds (once a session)

from faceage.evaluate.metrics import calibrate
from faceage.model.calibration import fit_temperature, label_nll, std_scale
from faceage.model.network import build_model, from_probs
from faceage.predict.estimator import FoldEnsemble, ModelInfo, load_estimator
from faceage.predict.export import PARITY_TOLERANCE, check_faces, parity, write_onnx

AGES = torch.arange(101, dtype=torch.float64)


def _gaussian_logits(centres: torch.Tensor, std: float) -> torch.Tensor:
    """Logits whose softmax is a discretised Gaussian of `std` around each centre: (1, N, 101)."""
    return (-((AGES[None] - centres[:, None]) ** 2) / (2 * std**2))[None]


def _shares(logits: torch.Tensor, ages: torch.Tensor, temperature: float) -> tuple[float, float]:
    p = from_probs(torch.softmax(logits / temperature, dim=-1).mean(0))
    c = calibrate(p.mean.numpy(), ages.numpy(), p.std.numpy(), "mean")
    return c.within_1std, c.within_2std


def test_an_over_confident_model_is_widened_towards_the_gaussian_shares() -> None:
    g = torch.Generator().manual_seed(0)
    ages = torch.randint(25, 75, (4000,), generator=g).double()
    centres = ages + 6 * torch.randn(4000, generator=g, dtype=torch.float64)  # errors of std 6 ...
    logits = _gaussian_logits(centres, 3.0)  # ... but a predicted std of 3
    t = fit_temperature(logits, ages)
    assert 3.3 < t < 4.6  # the variance must grow ≈ (6 / 3)² = 4 times
    before, after = _shares(logits, ages, 1.0), _shares(logits, ages, t)
    assert before[0] < 0.45 and before[1] < 0.75  # over-confident: 38 % and 68 % expected
    assert 0.62 < after[0] < 0.74 and 0.91 < after[1] < 0.97
    assert label_nll(logits, ages.long(), t) < label_nll(logits, ages.long(), 1.0)


def test_a_calibrated_model_is_left_alone() -> None:
    g = torch.Generator().manual_seed(1)
    ages = torch.randint(25, 75, (4000,), generator=g).double()
    centres = ages + 4 * torch.randn(4000, generator=g, dtype=torch.float64)
    assert 0.85 < fit_temperature(_gaussian_logits(centres, 4.0), ages) < 1.15


def test_the_std_scale_is_the_gaussian_likelihood_factor() -> None:
    mean, std, ages = np.array([10.0, 20.0, 30.0]), np.array([1.0, 2.0, 0.0]), np.array([12.0, 14.0, 31.0])
    assert std_scale(mean, std, ages) == pytest.approx(np.sqrt((4 + 9) / 2))  # the zero-std face is left out


def test_the_logits_are_divided_and_old_checkpoints_load_with_temperature_one() -> None:
    torch.manual_seed(0)
    model, _ = build_model("test_resnet", "mv")
    old = {k: v for k, v in model.state_dict().items() if k != "temperature"}
    fresh, _ = build_model("test_resnet", "mv")
    fresh.load_state_dict(old)  # strict: the missing temperature is filled in
    assert float(fresh.temperature) == 1.0
    x = torch.randn(2, 3, 32, 32)
    fresh.eval()
    with torch.no_grad():
        plain = fresh(x)
        fresh.temperature.fill_(2.5)
        assert torch.allclose(fresh(x), plain / 2.5)


def test_the_temperature_survives_export(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    model, _ = build_model("test_resnet", "mv")
    torch.nn.init.normal_(model.head.weight, std=5.0)  # a sharp distribution
    model.temperature.fill_(3.0)
    info = ModelInfo("calibrated", "test_resnet", "mv", 56, 64, (0,), None, flip=True)
    ensemble = FoldEnsemble([model.eval()], flip=True)
    x = check_faces(load_estimator(trained_run, device="cpu").info, limit=4)
    write_onnx(ensemble, info, x[:2], tmp_path / "t.onnx", 18)
    assert parity(ensemble, info, x, tmp_path / "t.onnx", "cpu") < PARITY_TOLERANCE
    got = load_estimator(tmp_path / "t.onnx", device="cpu").estimate(x).probs
    model.temperature.fill_(1.0)
    with torch.no_grad():
        logits = torch.stack([model(torch.from_numpy(x)), model(torch.from_numpy(x).flip(3))])
    want = torch.softmax(logits / 3.0, dim=-1).mean(0).numpy()  # the graph divides by the temperature
    assert got is not None and np.abs(got - want).max() < PARITY_TOLERANCE
    assert np.abs(torch.softmax(logits, dim=-1).mean(0).numpy() - want).max() > 1e-3

