"""The mean-variance loss (Pan et al., CVPR 2018) and the two baselines of the paper's Table 2, each declared
once in the registry `LOSSES`: its name, the head it trains and so whether it yields an age distribution.
Everything else (train's options, the model's head, calibration, predict) asks the registry, so a new loss
is one class here (or anywhere) decorated with `@register_loss`.

Definitions (GUIDE.md): K = 101 age classes (class index = age in years), p = softmax(z),
m = Σ j·p_j, v = Σ p_j·(j − m)², L = CE + λ1·(1/2N)·Σ(m − y)² + λ2·(1/N)·Σ v.
Everything here runs in fp32 even under autocast: the squared ages (up to 100²) and the sums over 101
classes lose too much in bf16/fp16.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from torch import Tensor, nn
from torch.nn import functional

from faceage.core.errors import FaceageError

AGE_CLASSES = 101
HeadKind = Literal["distribution", "regression"]


def _full_precision(x: Tensor) -> Tensor:
    """fp32 for fp16/bf16/fp32 input; float64 stays float64 (exact gradient checks)."""
    return x if x.dtype == torch.float64 else x.float()


def distribution_stats(logits: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Softmax probabilities (N, 101), expected age m (N,) and variance v (N,) of the age distribution."""
    if logits.ndim != 2 or logits.shape[1] != AGE_CLASSES:
        raise ValueError(f"age logits must have shape (N, {AGE_CLASSES}), got {tuple(logits.shape)}")
    with torch.autocast(logits.device.type, enabled=False):
        z = _full_precision(logits)
        probs = torch.softmax(z, dim=1)
        ages = torch.arange(AGE_CLASSES, dtype=z.dtype, device=z.device)
        mean = (probs * ages).sum(dim=1)
        variance = (probs * (ages - mean[:, None]).square()).sum(dim=1)
    return probs, mean, variance


def round_half_up(x: Tensor) -> Tensor:
    """round() as the paper means it (2.5 → 3), unlike torch.round's half-to-even (2.5 → 2)."""
    return torch.floor(x + 0.5)


def age_targets(ages: Tensor) -> Tensor:
    """Ages clamped to the representable range 0..100 (float): what the distribution can express."""
    return _full_precision(ages).clamp(0.0, AGE_CLASSES - 1)


class AgeLoss(nn.Module):
    """A training loss on the model's outputs; returns the total ("loss") and each unweighted term.

    Subclasses declare `name` (the --loss value) and `head`: "distribution" (logits (N, 101) over ages
    0..100, the prediction round(m)) or "regression" (one output: the age standardised with the training
    ages' target_mean/target_std). λ1/λ2 weight the mean-variance terms; other losses ignore them.
    """

    name: ClassVar[str]
    head: ClassVar[HeadKind]

    def __init__(self, lambda1: float = 0.2, lambda2: float = 0.05, target_mean: float = 0.0,
                 target_std: float = 1.0) -> None:
        super().__init__()
        if lambda1 < 0 or lambda2 < 0:
            raise FaceageError(f"loss weights must be ≥ 0, got lambda1={lambda1}, lambda2={lambda2}")
        if not target_std > 0:
            raise FaceageError(f"target_std must be > 0 (the training ages' std), got {target_std}")
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)
        self.target_mean = float(target_mean)
        self.target_std = float(target_std)

    @classmethod
    def distribution(cls) -> bool:
        """Whether the loss trains an age distribution (so the model has a std to calibrate)."""
        return cls.head == "distribution"

    def forward(self, outputs: Tensor, ages: Tensor) -> dict[str, Tensor]:
        """Loss terms for a batch, computed in fp32 whatever the autocast state."""
        with torch.autocast(outputs.device.type, enabled=False):
            return self.terms(_full_precision(outputs), _full_precision(ages))

    def terms(self, outputs: Tensor, ages: Tensor) -> dict[str, Tensor]:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return self.name


LOSSES: dict[str, type[AgeLoss]] = {}
DEFAULT_LOSS = "mv"


def register_loss(cls: type[AgeLoss]) -> type[AgeLoss]:
    """Class decorator: make `cls` a loss `faceage train --loss NAME` (and study, predict) know."""
    if cls.head not in ("distribution", "regression"):
        raise ValueError(f"loss {cls.__name__}: head must be 'distribution' or 'regression', not "
                         f"{cls.head!r}")
    LOSSES[cls.name] = cls
    return cls


def loss_class(name: str) -> type[AgeLoss]:
    """The registered loss `name`; FaceageError listing the registered ones otherwise."""
    if name not in LOSSES:
        raise FaceageError(f"unknown loss {name!r}: choose one of {', '.join(LOSSES)}")
    return LOSSES[name]


def make_loss(name: str, lambda1: float = 0.2, lambda2: float = 0.05,
              target_mean: float = 0.0, target_std: float = 1.0) -> AgeLoss:
    """The loss named `name`; target_mean/std (training ages) matter for regression heads only."""
    return loss_class(name)(lambda1, lambda2, target_mean, target_std)


def _distribution_inputs(name: str, outputs: Tensor, ages: Tensor) -> Tensor:
    """The clamped targets of a distribution loss, after checking the shapes."""
    if outputs.ndim != 2 or outputs.shape[1] != AGE_CLASSES or ages.shape != outputs.shape[:1]:
        raise ValueError(f"{name} loss needs logits (N, {AGE_CLASSES}) and ages (N,), got "
                         f"{tuple(outputs.shape)} and {tuple(ages.shape)}")
    return age_targets(ages)


@register_loss
class MeanVarianceLoss(AgeLoss):
    """{"loss", "ce", "mean", "variance"}: loss = ce + λ1·mean + λ2·variance, where "mean" = (1/2N)·Σ(m − y)²
    and "variance" = (1/N)·Σ v are recorded UNWEIGHTED (years², comparable across λ settings). The CE class
    is round-half-up of the age clamped to 0..100, and the mean term uses the clamped age (what the
    distribution can express)."""

    name = "mv"
    head = "distribution"

    def terms(self, outputs: Tensor, ages: Tensor) -> dict[str, Tensor]:
        y = _distribution_inputs(self.name, outputs, ages)
        ce = functional.cross_entropy(outputs, round_half_up(y).long())
        _, mean, variance = distribution_stats(outputs)
        mean_term = 0.5 * (mean - y.to(mean.dtype)).square().mean()
        variance_term = variance.mean()
        loss = ce + self.lambda1 * mean_term + self.lambda2 * variance_term
        return {"loss": loss, "ce": ce, "mean": mean_term, "variance": variance_term}

    def extra_repr(self) -> str:
        return f"mv, lambda1={self.lambda1}, lambda2={self.lambda2}"


@register_loss
class SoftmaxLoss(AgeLoss):
    """{"loss", "ce"}: cross-entropy only (the prediction is still round(m))."""

    name = "softmax"
    head = "distribution"

    def terms(self, outputs: Tensor, ages: Tensor) -> dict[str, Tensor]:
        y = _distribution_inputs(self.name, outputs, ages)
        ce = functional.cross_entropy(outputs, round_half_up(y).long())
        return {"loss": ce, "ce": ce}


@register_loss
class L2Loss(AgeLoss):
    """{"loss", "mse"}: MSE between the regressed value and the age standardised with target_mean/target_std
    (the training set's), so the loss is in standardised units; the age is regressed as given."""

    name = "l2"
    head = "regression"

    def terms(self, outputs: Tensor, ages: Tensor) -> dict[str, Tensor]:
        if outputs.ndim == 2 and outputs.shape[1] == 1:
            outputs = outputs[:, 0]
        if outputs.ndim != 1 or ages.shape != outputs.shape:
            raise ValueError(f"l2 loss needs outputs (N,) and ages (N,), got {tuple(outputs.shape)} and "
                             f"{tuple(ages.shape)}")
        target = (ages.to(outputs.dtype) - self.target_mean) / self.target_std
        mse = functional.mse_loss(outputs, target)
        return {"loss": mse, "mse": mse}

    def extra_repr(self) -> str:
        return f"l2, target_mean={self.target_mean:.3f}, target_std={self.target_std:.3f}"
