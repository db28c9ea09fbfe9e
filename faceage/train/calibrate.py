"""Calibrate a fold's kept model after its best epoch is chosen: fit the std scale on the fold's validation
rows (never its test rows), store it in best.pt, and log what it did to the test fold.

The log line compares the test fold's coverage (share of faces within 1 and 2 predicted stds of their age)
before and after, next to the alternative calibration (a softmax temperature fitted on the same rows, and
the MAE it would cost), so every run measures the choice again. A run trained before calibration existed
is calibrated when it is resumed (`fold.calibrate_finished`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from faceage.core.console import log
from faceage.evaluate.metrics import calibrate, mae
from faceage.manifest.protocols import FoldSplit
from faceage.model.calibration import fit_temperature, std_scale
from faceage.model.checkpoint import load_checkpoint, save_checkpoint
from faceage.model.network import AgeModel, AgePrediction, from_probs
from faceage.train.distributed import agree_on_failure
from faceage.train.loop import autocast

if TYPE_CHECKING:
    from faceage.train.fold import TrainingJob


def wants_calibration(job: TrainingJob, model: AgeModel, split: FoldSplit) -> bool:
    """Whether the fold's model gets a std scale: asked for, a distribution head, and validation rows."""
    if not job.cfg.calibrate or model.head_kind != "distribution":
        return False
    if not len(split.val):
        log.warning("no validation rows: the fold's uncertainty stays uncalibrated")
        return False
    return True


def calibrate_kept_model(job: TrainingJob, k: int, split: FoldSplit, model: AgeModel) -> dict[str, Any]:
    """Fit `model`'s std scale (it holds best.pt's weights) on fold k's validation rows, write it into
    best.pt, and return what was measured (also stored in best.pt as "calibration")."""
    ages = job.manifest["age"].to_numpy(np.float64)
    val_logits = view_logits(job, model, split.val)
    val_raw = _decode(val_logits, 1.0)
    scale = std_scale(val_raw.mean.numpy(), val_raw.std.numpy(), ages[split.val])
    temperature = fit_temperature(val_logits, torch.from_numpy(ages[split.val]))
    test_logits = view_logits(job, model, split.test)
    raw, tempered = _decode(test_logits, 1.0), _decode(test_logits, temperature)
    age = ages[split.test]
    test = {name: _scores(p.pred.numpy(), p.mean.numpy(), p.std.numpy() * factor, age)
            for name, p, factor in (("uncalibrated", raw, 1.0), ("std_scale", raw, scale),
                                    ("temperature", tempered, 1.0))}
    info = {"method": "std_scale", "std_scale": scale, "val_rows": len(split.val), "test": test,
            "temperature": temperature}  # the temperature: the alternative, measured and not applied
    model.std_scale.fill_(scale)
    with agree_on_failure(job.ctx, f"writing fold {k}'s calibration"):
        if job.run.writer:
            best = load_checkpoint(job.run.best_path(k))
            best["model"], best["calibration"] = model.state_dict(), info
            save_checkpoint(job.run.best_path(k), best)
    log.info("fold %d: calibration on %d validation rows: std × %.3f; test within 1/2 std %s → %s (a "
             "temperature of %.3f instead: %s, MAE %.3f → %.3f)", k, len(split.val), scale,
             _shares(test["uncalibrated"]), _shares(test["std_scale"]), temperature,
             _shares(test["temperature"]), test["uncalibrated"]["mae"], test["temperature"]["mae"])
    return info


def view_logits(job: TrainingJob, model: AgeModel, rows: np.ndarray) -> Tensor:
    """Logits (views, N, 101) of `rows` on the CPU in fp32: the face, and its mirror when the run flips."""
    batches = job.data.batches(rows, job.cfg.batch_size, train=False, generator=torch.Generator())
    model.eval()
    parts = []
    with torch.inference_mode():
        for x, _ in batches:
            with autocast(job.ctx.device):
                views = [model(x), *([model(x.flip(3))] if job.cfg.tta_flip else [])]
            parts.append(torch.stack(views).float().cpu())
    return torch.cat(parts, dim=1)


def _decode(logits: Tensor, temperature: float) -> AgePrediction:
    """The view-averaged distribution's stats from these logits at `temperature` (uncalibrated std)."""
    return from_probs(torch.softmax(logits / temperature, dim=-1).mean(0))


def _scores(pred: np.ndarray, mean: np.ndarray, std: np.ndarray, age: np.ndarray) -> dict[str, float]:
    shares = calibrate(mean, age, std, "mean")
    return {"mae": mae(pred, age), "within_1std": shares.within_1std, "within_2std": shares.within_2std}


def _shares(scores: dict[str, float]) -> str:
    return f"{100 * scores['within_1std']:.1f}/{100 * scores['within_2std']:.1f} %"
