"""The paper's optimiser (SGD with momentum and weight decay) and learning-rate schedules, from the config."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import CosineAnnealingLR, LRScheduler, StepLR

from faceage.train.config import TrainConfig


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.SGD:
    """SGD over every trainable parameter (weight decay on all of them, Caffe-style as in the paper); on
    CUDA the fused implementation (one kernel for all parameters instead of a few per tensor)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           fused=device.type == "cuda")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore a saved optimiser state, keeping this device's implementation choice (`fused`): a run saved
    on a GPU may resume on a CPU, and the other way round."""
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, choice in zip(optimizer.param_groups, fused, strict=True):
        group["fused"] = choice


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LRScheduler:
    """Stepped once per epoch: `step` multiplies the lr by gamma every step_size epochs (the paper's
    schedule); `cosine` anneals it to zero over the run."""
    if cfg.schedule == "cosine":
        return CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return StepLR(optimizer, step_size=cfg.step_size, gamma=cfg.gamma)
