"""One test fold of a training job: build the model, train it epoch by epoch (continuing last.pt when there
is one), keep the best epoch on validation in best.pt, then predict the fold's test rows with it.

Each fold is seeded from `seed + fold` (model initialisation, data order, crops, flips); its state is
checkpointed every epoch (and at Ctrl-C), so a resumed fold computes what an uninterrupted one would have.
Checkpoints are written from CPU copies on a background thread while the next epoch trains; the ranks of a
DDP job agree at each checkpoint whether rank 0's writing failed. A finished fold keeps best.pt and its
predictions; its last.pt (twice the size: the optimiser's momentum) only with `keep_last`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.manifest.protocols import FoldSplit
from faceage.model.checkpoint import CheckpointWriter, load_checkpoint
from faceage.model.losses import AgeLoss, make_loss
from faceage.model.network import AgeModel, build_model
from faceage.train.batches import DeviceImages, num_batches
from faceage.train.calibrate import calibrate_kept_model, wants_calibration
from faceage.train.config import TrainConfig
from faceage.train.distributed import DistContext, agree_on_failure, any_rank
from faceage.train.loop import EpochPlan, EpochProgress, Learner, epoch_mae, predict, train_epoch
from faceage.train.optim import load_optimizer_state, make_optimizer, make_scheduler
from faceage.train.rng import rng_state, set_rng_state
from faceage.train.runs import RunFolder


class RunInterruptedError(FaceageError):
    """Ctrl-C stopped training after saving a consistent checkpoint; `--resume` continues it."""


@dataclass(frozen=True)
class TrainingJob:
    """What every fold of one run shares: settings, manifest, images on the device, run folder, place in
    the process group, and whether Ctrl-C was pressed."""

    cfg: TrainConfig
    manifest: pd.DataFrame
    data: DeviceImages
    run: RunFolder
    ctx: DistContext
    stop_requested: Callable[[], bool]

    def resume_hint(self) -> str:
        return f"continue with: faceage train --out {self.run.root} --resume"


@dataclass
class FoldState:
    """What last.pt carries besides the model, optimiser and scheduler."""

    epochs_done: int = 0
    progress: EpochProgress = field(default_factory=EpochProgress)  # of the epoch in progress
    best_val_mae: float = math.inf
    best_epoch: int = 0


@dataclass(frozen=True)
class FoldParts:
    """The objects a fold's checkpoint saves and restores."""

    model: AgeModel
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    generator: torch.Generator  # data order, crops and flips of this fold
    ema: ModelEmaV3 | None  # the weight average (`--ema`), validated beside the model


def fit_fold(job: TrainingJob, k: int, split: FoldSplit) -> None:
    """Train fold k (continuing its last.pt when there is one), then predict its test rows with the model
    `keep` names (best.pt)."""
    cfg, run, ctx = job.cfg, job.run, job.ctx
    n_steps = num_batches(len(split.train), cfg.batch_size, drop_last=True)  # ≥ 1: run_training checked
    parts, loss_fn = _build(job, k, split)
    state = FoldState()
    if run.last_path(k).exists():
        state = _restore(run.last_path(k), parts, ctx)
        log.info("fold %d: resuming after epoch %d, step %d", k, state.epochs_done, state.progress.step)
    elif k in run.predicted_folds():
        log.warning("fold %d: trained to fewer epochs before, and its last.pt was not kept (keep_last: "
                    "false); training it again from the start", k)
    learner = Learner(_wrap(parts.model, cfg, ctx), parts.model, loss_fn, parts.optimizer, parts.ema)
    with CheckpointWriter() as writer:
        checkpoint = _Checkpointer(job, k, parts, writer)
        for epoch in range(state.epochs_done, cfg.epochs):
            if epoch > state.epochs_done and any_rank(job.stop_requested(), ctx):
                checkpoint.finish()
                raise RunInterruptedError(f"stopped after fold {k}, epoch {epoch} (saved); "
                                          f"{job.resume_hint()}")
            _epoch(job, k, split, parts, learner, checkpoint, state, epoch, n_steps)
        if cfg.keep != "best":  # the last epoch's model, or its weight average
            kept = parts.ema.module if cfg.keep == "ema" and parts.ema is not None else parts.model
            state.best_val_mae = _mae(job, kept, split.val) if len(split.val) else math.nan
            state.best_epoch = cfg.epochs
            checkpoint.save(parts.generator.get_state(), cfg.epochs, state, best=kept)
        checkpoint.finish()
    _predict_test(job, k, split, parts.model)


def _epoch(job: TrainingJob, k: int, split: FoldSplit, parts: FoldParts, learner: Learner,
           checkpoint: _Checkpointer, state: FoldState, epoch: int, n_steps: int) -> None:
    """Train one epoch (from the step a resumed one reached), validate, step the schedule, checkpoint."""
    cfg, ctx = job.cfg, job.ctx
    at_start = parts.generator.get_state()
    progress = state.progress
    batches = job.data.batches(split.train, cfg.batch_size, True, parts.generator, drop_last=True)
    batches = itertools.islice(batches, progress.step, None)  # all drawn up front: skipping is exact
    lr = parts.optimizer.param_groups[0]["lr"]
    plan = EpochPlan(batches, n_steps, f"fold {k}, epoch {epoch + 1}/{cfg.epochs}", epoch * n_steps)
    if train_epoch(learner, plan, progress, ctx, job.stop_requested):
        checkpoint.save(at_start, epoch, state)
        checkpoint.finish()
        raise RunInterruptedError(f"stopped at {plan.label}, step {progress.step} (saved); "
                                  f"{job.resume_hint()}")
    val = _validate(job, parts, split)
    parts.scheduler.step(epoch + 1)
    improved = cfg.keep == "best" and (not len(split.val) or val["val_mae"] < state.best_val_mae)
    if improved:
        state.best_val_mae, state.best_epoch = val["val_mae"], epoch + 1
    state.epochs_done, state.progress = epoch + 1, EpochProgress()
    checkpoint.save(parts.generator.get_state(), epoch + 1, state, best=parts.model if improved else None,
                    history=_history_row(k, epoch + 1, lr, progress, val))
    log.info("%s: loss %.4f, train MAE %.2f, val MAE %s%s, %.0f img/s", plan.label, progress.means()["loss"],
             epoch_mae(progress), _val_text(val), " (best)" if improved else "", progress.img_s())


def _build(job: TrainingJob, k: int, split: FoldSplit) -> tuple[FoldParts, AgeLoss]:
    """The fold's model (pretrained weights unless last.pt will replace them), optimiser, schedule, data
    generator, weight average and loss, all seeded from `seed + k`."""
    cfg, run, ctx = job.cfg, job.run, job.ctx
    ages = job.manifest["age"].to_numpy(np.float64)
    target_mean, target_std = float(ages[split.train].mean()), float(ages[split.train].std()) or 1.0
    resuming = run.last_path(k).exists()
    torch.manual_seed(cfg.seed + k)
    pretrained = None if resuming else cfg.pretrained  # last.pt replaces the weights (and works offline)
    model, source = build_model(cfg.backbone, cfg.loss, pretrained, target_mean, target_std)
    source = f"{run.last_path(k)}" if resuming else source
    log.info("fold %d: %d train, %d validation, %d test rows; %s weights: %s", k, len(split.train),
             len(split.val), len(split.test), cfg.backbone, source)
    if len(split.val) == 0:
        log.warning("fold %d has no validation rows: best.pt is the model of the last epoch", k)
    model.to(ctx.device)
    if ctx.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, cfg, ctx.device)
    ema = ModelEmaV3(model, decay=cfg.ema_decay, use_warmup=True) if cfg.ema else None
    parts = FoldParts(model, optimizer, make_scheduler(optimizer, cfg),
                      torch.Generator().manual_seed(cfg.seed + k), ema)
    return parts, make_loss(cfg.loss, cfg.lambda1, cfg.lambda2, target_mean, target_std)


def _validate(job: TrainingJob, parts: FoldParts, split: FoldSplit) -> dict[str, float]:
    """Validation MAE of the model (`val_mae`) and of its weight average (`val_mae_ema`, with --ema)."""
    if not len(split.val):
        return {"val_mae": math.nan, **({"val_mae_ema": math.nan} if parts.ema is not None else {})}
    val = {"val_mae": _mae(job, parts.model, split.val)}
    if parts.ema is not None:
        val["val_mae_ema"] = _mae(job, parts.ema.module, split.val)
    return val


def _val_text(val: dict[str, float]) -> str:
    return " (average ".join(f"{v:.2f}" for v in val.values()) + (")" if len(val) > 1 else "")


def _wrap(model: AgeModel, cfg: TrainConfig, ctx: DistContext) -> nn.Module:
    """The module the training steps call: DDP across ranks, then torch.compile when asked."""
    trainer: nn.Module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        trainer = DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        trainer = torch.compile(trainer)  # type: ignore[assignment]
    return trainer


def _restore(path: Path, parts: FoldParts, ctx: DistContext) -> FoldState:
    """Load last.pt into the fold's objects. The partial epoch's meters (sums over all ranks) go to rank 0
    only, because the end of the epoch adds the ranks' meters together."""
    ckpt = load_checkpoint(path)
    parts.model.load_state_dict(ckpt["model"])
    load_optimizer_state(parts.optimizer, ckpt["optimizer"])
    parts.scheduler.load_state_dict(ckpt["scheduler"])
    parts.generator.set_state(ckpt["generator"])
    if parts.ema is not None:
        parts.ema.module.load_state_dict(ckpt["ema"])
    set_rng_state(ckpt["rng"], ctx.device)
    progress = EpochProgress(**ckpt["progress"])
    if not ctx.is_main:
        progress = EpochProgress(step=progress.step)
    return FoldState(ckpt["epochs_done"], progress, ckpt["best_val_mae"], ckpt["best_epoch"])


@dataclass(frozen=True)
class _Checkpointer:
    """Writes a fold's last.pt, best.pt and history rows (rank 0 only; files atomic, so a crash keeps the
    previous one). Every rank calls `save` and `finish` at the same points: they are where the ranks agree
    whether the writing failed."""

    job: TrainingJob
    fold: int
    parts: FoldParts
    writer: CheckpointWriter

    def save(self, generator_state: torch.Tensor, epochs_done: int, state: FoldState,
             best: nn.Module | None = None, history: dict[str, Any] | None = None) -> None:
        """last.pt: everything needed to continue after `epochs_done` epochs plus `state.progress.step`
        steps (`generator_state` is the generator at the start of the epoch in progress); with `best` (the
        raw model or its average), also best.pt: those weights and the settings that rebuild them (backbone,
        loss, input size, flip: `config`). Written in the background; the previous write's failure raises."""
        job, parts, run = self.job, self.parts, self.job.run
        with agree_on_failure(job.ctx, f"saving fold {self.fold}'s checkpoint"):
            if not run.writer:
                return
            if history is not None:
                run.add_history(history)  # a rerun of the epoch replaces its row
            config = job.cfg.to_dict()
            files = [(run.best_path(self.fold), {
                "fold": self.fold, "epoch": state.best_epoch, "val_mae": state.best_val_mae,
                "model": best.state_dict(), "config": config, "kept": job.cfg.keep,
            })] if best is not None else []
            files.append((run.last_path(self.fold), {
                "fold": self.fold, "epochs_done": epochs_done, "model": parts.model.state_dict(),
                "optimizer": parts.optimizer.state_dict(), "scheduler": parts.scheduler.state_dict(),
                "generator": generator_state, "rng": rng_state(job.ctx.device),
                "progress": vars(state.progress), "best_val_mae": state.best_val_mae,
                "best_epoch": state.best_epoch, "config": config,  # what rebuilds the model, as in best.pt
                **({"ema": parts.ema.module.state_dict()} if parts.ema is not None else {}),
            }))
            self.writer.save(files)

    def finish(self) -> None:
        """Wait until rank 0's files are on disk (every rank returns only then), or all raise its error."""
        with agree_on_failure(self.job.ctx, f"saving fold {self.fold}'s checkpoint"):
            self.writer.wait()


def _predictions(job: TrainingJob, model: nn.Module, rows: np.ndarray) -> dict[str, np.ndarray]:
    """The model's predictions on `rows`, with the run's test-time flip (as predict and export apply it)."""
    batches = job.data.batches(rows, job.cfg.batch_size, train=False, generator=torch.Generator())
    return predict(model, batches, job.ctx.device, flip=job.cfg.tta_flip)  # type: ignore[arg-type]


def _mae(job: TrainingJob, model: nn.Module, rows: np.ndarray) -> float:
    """MAE of the predictions on `rows` (every rank computes it, so all make the same best-model choice)."""
    ages = job.manifest["age"].to_numpy(np.float64)[rows]
    return float(np.abs(_predictions(job, model, rows)["pred"] - ages).mean())


def _history_row(k: int, epoch: int, lr: float, progress: EpochProgress,
                 val: dict[str, float]) -> dict[str, Any]:
    terms = {name: value for name, value in progress.means().items() if name != "abs_err"}
    return {"fold": k, "epoch": epoch, "lr": lr, **terms, "train_mae": epoch_mae(progress), **val,
            "img_s": progress.img_s(), "seconds": progress.seconds}


def _predict_test(job: TrainingJob, k: int, split: FoldSplit, model: AgeModel) -> None:
    """Predict the test rows with best.pt's weights (on disk: `finish` returned on every rank), calibrated
    on the validation rows; writing the predictions marks the fold finished, and its last.pt goes unless
    `keep_last`."""
    ages = job.manifest["age"].to_numpy(np.float64)[split.test]
    last_mae = float(np.abs(_predictions(job, model, split.test)["pred"] - ages).mean())  # the last epoch's
    best = load_checkpoint(job.run.best_path(k))
    model.load_state_dict(best["model"])
    predict_kept_model(job, k, split, model, best, last_mae)


def calibrate_finished(job: TrainingJob, k: int, split: FoldSplit) -> None:
    """Calibrate a fold finished before calibration existed (its best.pt has none) and predict its test
    rows again, as `--resume` does for such a run."""
    best = load_checkpoint(job.run.best_path(k))
    model, _ = build_model(job.cfg.backbone, job.cfg.loss)
    model.load_state_dict(best["model"])
    model.to(job.ctx.device)
    log.info("fold %d: finished before calibration existed; calibrating it", k)
    predict_kept_model(job, k, split, model, best, None)


def needs_calibration(cfg: TrainConfig, run: RunFolder, k: int) -> bool:
    """Whether finished fold k's best.pt lacks the calibration `cfg` asks for."""
    if not cfg.calibrate or cfg.loss == "l2" or not run.best_path(k).exists():
        return False
    return "calibration" not in load_checkpoint(run.best_path(k))


def predict_kept_model(job: TrainingJob, k: int, split: FoldSplit, model: AgeModel, best: dict[str, Any],
                       last_mae: float | None) -> None:
    """Calibrate the kept model (best.pt's weights, loaded into `model`), then predict and write the test
    rows; `last_mae` (the last epoch's test MAE) is logged beside the kept model's."""
    if wants_calibration(job, model, split):
        calibrate_kept_model(job, k, split, model)
    out = _predictions(job, model, split.test)
    rows = job.manifest.iloc[split.test]
    table = pd.DataFrame({
        "path": rows["path"].to_numpy(), "age": rows["age"].to_numpy(), "age_std": rows["age_std"].to_numpy(),
        "subject": rows["subject"].to_numpy(), "fold": k, "pred": out["pred"], "mean": out["mean"],
        "std": out["std"],
    })
    with agree_on_failure(job.ctx, f"writing fold {k}'s predictions"):
        job.run.write_fold_predictions(k, table, out.get("probs"))
        if not job.cfg.keep_last:
            job.run.drop_last(k)
    last = "" if last_mae is None else f"; the last epoch's model: {last_mae:.3f}"
    log.info("fold %d: test MAE %.3f on %d images (best.pt: %s model of epoch %s)%s", k,
             float(np.abs(table["pred"] - table["age"]).mean()), len(table), best.get("kept", "best"),
             best["epoch"], last)
