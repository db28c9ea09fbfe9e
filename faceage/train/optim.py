"""Optimisers and learning-rate schedules from timm's factories, from the config.

The paper's settings are the defaults: `sgd` is SGD with (non-Nesterov) momentum and weight decay on every
parameter (Caffe-style), stepped ×gamma every `step_size` epochs. Any optimiser timm offers (`adamw`, `lamb`,
`nesterov`, …), a linear warm-up, cosine annealing to `min_lr`, layer-wise lr decay of the backbone and no
weight decay on norms and biases are options. Schedules step once per epoch, from the epoch number alone,
so a resumed run sets exactly the lr an uninterrupted one would.
"""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import create_optimizer_v2, list_optimizers, param_groups_layer_decay
from timm.scheduler import create_scheduler_v2
from timm.scheduler.scheduler import Scheduler

from faceage.core.errors import FaceageError
from faceage.model.network import AgeModel
from faceage.train.config import TrainConfig

# faceage's names that differ from timm's: the paper's SGD is timm's "momentum" (timm's "sgd" is Nesterov)
_TIMM_NAMES = {"sgd": "momentum"}
WARMUP_START = 0.01  # the warm-up starts at this share of the lr


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore a saved optimiser state, keeping this device's implementation choice (`fused`): a run saved
    on a GPU may resume on a CPU, and the other way round."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, choice in zip(optimizer.param_groups, fused, strict=True):
        group["fused"] = choice


def optimizer_names() -> list[str]:
    """Every optimiser `--optimizer` accepts."""
    return sorted({*map(str, list_optimizers()), *_TIMM_NAMES})


def check_optimizer(cfg: TrainConfig) -> str:
    """timm's name of `cfg.optimizer`; FaceageError for one timm does not offer (checked before training)."""
    name = _TIMM_NAMES.get(cfg.optimizer, cfg.optimizer)
    if name not in list_optimizers():
        raise FaceageError(f"--optimizer {cfg.optimizer!r}: choose one of {', '.join(optimizer_names())}.")
    return name


def make_optimizer(model: AgeModel, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimiser `cfg.optimizer` over the model's trainable parameters, with weight decay on all of them
    unless not `decay_norm_bias`, and the backbone's layers scaled by `layer_decay` (the head at 1) if set;
    SGD on CUDA runs fused (one kernel for all parameters instead of a few per tensor)."""
    name = check_optimizer(cfg)
    params: Any = model
    if cfg.layer_decay is not None:
        params = param_groups_layer_decay(model.backbone, cfg.weight_decay, layer_decay=cfg.layer_decay,
                                          weight_decay_exclude_1d=not cfg.decay_norm_bias)
        params += _head_groups(model, cfg)
    sgd = name in ("momentum", "nesterov", "sgd")
    extra: dict[str, Any] = {"momentum": cfg.momentum, "fused": device.type == "cuda"} if sgd else {}
    return create_optimizer_v2(params, name, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               filter_bias_and_bn=not cfg.decay_norm_bias, **extra)


def _head_groups(model: AgeModel, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The age head at the full lr (layer decay scales the backbone only)."""
    decay = [p for p in model.head.parameters() if p.ndim > 1 or cfg.decay_norm_bias]
    rest = [p for p in model.head.parameters() if all(p is not q for q in decay)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0}]
    return groups + ([{"params": rest, "weight_decay": 0.0, "lr_scale": 1.0}] if rest else [])


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Scheduler:
    """timm's schedule for `cfg.schedule` (step: ×gamma every step_size epochs; cosine: to min_lr over the
    run), after `warmup_epochs` of linear warm-up; call `.step(epoch)` with the number of epochs done."""
    scheduler, _ = create_scheduler_v2(optimizer, sched=cfg.schedule, num_epochs=cfg.epochs,
                                       decay_epochs=cfg.step_size, decay_rate=cfg.gamma, min_lr=cfg.min_lr,
                                       warmup_epochs=cfg.warmup_epochs, warmup_lr=cfg.lr * WARMUP_START)
    scheduler.step(0)  # the first epoch's lr, with each group's layer-decay scale applied
    return scheduler
