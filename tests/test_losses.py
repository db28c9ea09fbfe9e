"""The mean-variance loss and its baselines: values on hand-made distributions, gradients vs the paper."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from faceage.core.errors import FaceageError
from faceage.model.losses import AGE_CLASSES, distribution_stats, make_loss, round_half_up

J = np.arange(AGE_CLASSES, dtype=np.float64)


def logits_of(probs: dict[int, float]) -> torch.Tensor:
    """One row of logits whose softmax puts exactly `probs` on the given ages (0 elsewhere in fp32)."""
    row = torch.full((AGE_CLASSES,), -1e4)
    for age, p in probs.items():
        row[age] = math.log(p)
    return row


def test_stats_of_uniform_and_two_point_distributions() -> None:
    logits = torch.stack([torch.zeros(AGE_CLASSES), logits_of({20: 0.25, 40: 0.75})])
    probs, mean, variance = distribution_stats(logits)
    assert probs.dtype == mean.dtype == variance.dtype == torch.float32
    assert probs.sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    # uniform over 0..100: mean 50, variance (101² − 1)/12 = 850
    assert mean.tolist() == pytest.approx([50.0, 0.25 * 20 + 0.75 * 40])
    assert variance.tolist() == pytest.approx([850.0, 0.25 * 15**2 + 0.75 * 5**2], rel=1e-5)


def test_stats_match_numpy_on_random_logits() -> None:
    z = torch.randn(5, AGE_CLASSES, generator=torch.Generator().manual_seed(0)) * 3
    _, mean, variance = distribution_stats(z)
    zz = z.double().numpy()
    p = np.exp(zz - zz.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    m = p @ J
    v = (p * (J[None] - m[:, None]) ** 2).sum(1)
    np.testing.assert_allclose(mean.numpy(), m, rtol=1e-5)
    np.testing.assert_allclose(variance.numpy(), v, rtol=1e-4)


def test_mv_loss_value_by_hand() -> None:
    logits = torch.stack([logits_of({20: 0.25, 40: 0.75}), torch.zeros(AGE_CLASSES)])
    ages = torch.tensor([40.0, 50.0])
    out = make_loss("mv", lambda1=0.2, lambda2=0.05)(logits, ages)
    assert set(out) == {"loss", "ce", "mean", "variance"}
    ce = (-math.log(0.75) + math.log(AGE_CLASSES)) / 2
    mean_term = (0.5 * (35 - 40) ** 2 + 0.5 * (50 - 50) ** 2) / 2  # (1/2N) Σ (m − y)²
    variance_term = (75.0 + 850.0) / 2
    assert out["ce"].item() == pytest.approx(ce, rel=1e-5)
    assert out["mean"].item() == pytest.approx(mean_term, rel=1e-5)
    assert out["variance"].item() == pytest.approx(variance_term, rel=1e-5)
    assert out["loss"].item() == pytest.approx(ce + 0.2 * mean_term + 0.05 * variance_term, rel=1e-5)
    for value in out.values():
        assert value.dtype == torch.float32 and value.ndim == 0


def test_softmax_loss_is_cross_entropy_only() -> None:
    logits = logits_of({30: 0.5, 31: 0.5})[None]
    out = make_loss("softmax")(logits, torch.tensor([31.0]))
    assert set(out) == {"loss", "ce"}
    assert out["loss"].item() == pytest.approx(math.log(2), rel=1e-5)


def test_targets_round_half_up_and_clamp_to_100() -> None:
    logits = torch.stack([logits_of({30: 0.2, 31: 0.8}), logits_of({99: 0.5, 100: 0.5})])
    out = make_loss("mv", lambda1=1.0, lambda2=0.0)(logits, torch.tensor([30.5, 115.0]))
    # 30.5 → class 31 (half-up), 115 → class 100; the mean term uses the clamped 100
    assert out["ce"].item() == pytest.approx((-math.log(0.8) - math.log(0.5)) / 2, rel=1e-5)
    assert out["mean"].item() == pytest.approx((0.5 * (30.8 - 30.5) ** 2 + 0.5 * 0.5**2) / 2, rel=1e-4)
    assert round_half_up(torch.tensor([2.5, 3.5, -0.5, 2.49])).tolist() == [3.0, 4.0, 0.0, 2.0]


def test_l2_loss_is_mse_on_standardised_ages() -> None:
    loss = make_loss("l2", target_mean=40.0, target_std=10.0)
    out = loss(torch.tensor([0.5, -1.0, 0.0]), torch.tensor([45.0, 30.0, 60.0]))
    assert set(out) == {"loss", "mse"}
    assert out["mse"].item() == pytest.approx((0 + 0 + 2.0**2) / 3)
    # (N, 1) outputs are accepted as well; ages above 100 are not clamped for regression
    out = loss(torch.tensor([[7.0]]), torch.tensor([110.0]))
    assert out["loss"].item() == pytest.approx(0.0)


def _grad(term: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(term, z, retain_graph=True)
    return g


def test_gradients_match_the_papers_closed_forms() -> None:
    n = 6
    gen = torch.Generator().manual_seed(1)
    z = (torch.randn(n, AGE_CLASSES, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    y = torch.randint(0, AGE_CLASSES, (n,), generator=gen).double()
    out = make_loss("mv", lambda1=0.2, lambda2=0.05)(z, y)
    assert out["loss"].dtype == torch.float64
    p = torch.softmax(z.detach(), dim=1)
    j = torch.arange(AGE_CLASSES, dtype=torch.float64)
    m = (p * j).sum(1, keepdim=True)
    v = (p * (j - m) ** 2).sum(1, keepdim=True)
    mean_grad = (m - y[:, None]) * p * (j - m) / n  # Eq. 11: ∂[(m − y)²/2]/∂z_j = (m − y)·p_j·(j − m)
    variance_grad = p * ((j - m) ** 2 - v) / n  # Eq. 14: ∂v/∂z_j = p_j·((j − m)² − v)
    ce_grad = (p - torch.nn.functional.one_hot(y.long(), AGE_CLASSES)) / n
    torch.testing.assert_close(_grad(out["mean"], z), mean_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(out["variance"], z), variance_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(_grad(out["loss"], z), ce_grad + 0.2 * mean_grad + 0.05 * variance_grad,
                               rtol=1e-10, atol=1e-12)


def test_terms_stay_fp32_under_cpu_bf16_autocast() -> None:
    gen = torch.Generator().manual_seed(2)
    layer = torch.nn.Linear(16, AGE_CLASSES)
    x = torch.randn(8, 16, generator=gen)
    ages = torch.randint(20, 70, (8,), generator=gen).float()
    loss = make_loss("mv")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        out = loss(logits, ages)
        _, mean, variance = distribution_stats(logits)
    assert logits.dtype == torch.bfloat16
    assert all(v.dtype == torch.float32 for v in (*out.values(), mean, variance))
    reference = loss(logits.float(), ages)  # same bf16 logits, fp32 maths outside autocast
    for key, value in out.items():
        assert value.item() == pytest.approx(reference[key].item(), rel=1e-6), key


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "huber"}, "unknown loss"),
    ({"name": "mv", "lambda1": -0.1}, "≥ 0"),
    ({"name": "l2", "target_std": 0.0}, "target_std"),
])
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(FaceageError, match=message):
        make_loss(**kwargs)


def test_wrong_output_shape_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="101"):
        make_loss("mv")(torch.zeros(2, 100), torch.tensor([1.0, 2.0]))


def test_a_loss_declared_in_another_module_is_known_to_every_stage(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a loss is one decorated class: train's settings, the model's head, the loss factory and
    predict's model info ask the registry, so no other file changes."""
    from faceage.model.losses import LOSSES, AgeLoss, register_loss
    from faceage.model.network import build_model
    from faceage.predict.info import ModelInfo
    from faceage.train.config import resolve_config

    monkeypatch.setattr("faceage.model.losses.LOSSES", dict(LOSSES))  # the registration ends with the test

    @register_loss
    class AbsoluteError(AgeLoss):
        name = "toy-l1"
        head = "regression"

        def terms(self, outputs: torch.Tensor, ages: torch.Tensor) -> dict[str, torch.Tensor]:
            l1 = (outputs - (ages - self.target_mean) / self.target_std).abs().mean()
            return {"loss": l1, "l1": l1}

    assert resolve_config(None, {"loss": "toy-l1", "pretrained": "none"}).loss == "toy-l1"
    model, _ = build_model("test_resnet", "toy-l1")
    assert model.head_kind == "regression" and model.head.out_features == 1
    loss = make_loss("toy-l1", target_mean=30.0, target_std=10.0)
    assert loss(torch.tensor([0.0, 1.0]), torch.tensor([30.0, 30.0]))["l1"].item() == pytest.approx(0.5)
    assert ModelInfo("toy", "test_resnet", "toy-l1", 56, 64, (0,), None).distribution is False
    with pytest.raises(FaceageError, match="loss must be one of mv, softmax, l2, toy-l1, not 'huber'"):
        resolve_config(None, {"loss": "huber"})
