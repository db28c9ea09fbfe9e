"""One test fold of a training job, top to bottom: build the fold (or restore its last.pt), train it epoch by
epoch keeping the best epoch on validation in best.pt, then test the kept model (`kept.test_kept_model`).

Each fold is seeded from `seed + fold` (model initialisation, data order, crops, flips); its state is
checkpointed every epoch (and at Ctrl-C) by `fold_state.FoldFiles`, so a resumed fold computes what an
uninterrupted one would have.
"""

from __future__ import annotations

import itertools
import math

import torch
from timm.utils import ModelEmaV3
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.manifest.protocols import FoldSplit
from faceage.model.checkpoint import load_training_state
from faceage.model.losses import make_loss
from faceage.model.network import AgeModel, build_model
from faceage.train.balance import balanced_rows
from faceage.train.batches import num_batches
from faceage.train.config import parse_source_weights
from faceage.train.distributed import any_rank
from faceage.train.fold_state import Fold, FoldFiles
from faceage.train.job import RunInterruptedError, TrainingJob
from faceage.train.kept import test_kept_model
from faceage.train.loop import EpochPlan, EpochProgress, Learner, epoch_mae, train_epoch
from faceage.train.optim import load_optimizer_state, make_optimizer, make_scheduler
from faceage.train.rng import set_rng_state


def fit_fold(job: TrainingJob, k: int, split: FoldSplit) -> None:
    """Train fold k (continuing its last.pt when there is one), then test the model `keep` names."""
    cfg, run = job.cfg, job.run
    fold = _build(job, k, split)
    if run.last_path(k).exists():
        _restore(job, fold)
        log.info("fold %d: resuming after epoch %d, step %d", k, fold.epochs_done, fold.progress.step)
    elif k in run.predicted_folds():
        log.warning("fold %d: trained to fewer epochs before, and its last.pt was not kept (keep_last: "
                    "false); training it again from the start", k)
    learner = Learner(_wrap(fold.model, job), fold.model, fold.loss_fn, fold.optimizer, fold.ema)
    n_steps = num_batches(len(split.train), cfg.batch_size, drop_last=True)  # ≥ 1: run_training checked
    with FoldFiles(job, fold) as files:
        for epoch in range(fold.epochs_done, cfg.epochs):
            if epoch > fold.epochs_done and any_rank(job.stop_requested(), job.ctx):
                files.finish()
                raise RunInterruptedError(f"stopped after fold {k}, epoch {epoch} (saved); "
                                          f"{job.resume_hint()}")
            _epoch(job, fold, learner, files, epoch, n_steps)
        if cfg.keep != "best":  # the last epoch's model, or its weight average
            kept = fold.ema.module if cfg.keep == "ema" and fold.ema is not None else fold.model
            fold.best_val_mae = job.mae(kept, split.val) if len(split.val) else math.nan
            fold.best_epoch = cfg.epochs
            files.save(fold.generator.get_state(), best=kept)
        files.finish()
    test_kept_model(job, k, split, fold.model)


def _epoch(job: TrainingJob, fold: Fold, learner: Learner, files: FoldFiles, epoch: int,
           n_steps: int) -> None:
    """Train one epoch (from the step a resumed one reached), validate, step the schedule, checkpoint."""
    cfg = job.cfg
    at_start = fold.generator.get_state()
    train = fold.split.train
    rows = balanced_rows(train, job.ages(train), job.sources(train), cfg.age_balance, cfg.source_balance,
                         fold.generator, parse_source_weights(cfg.source_weights))
    batches = job.data.batches(rows, cfg.batch_size, True, fold.generator, drop_last=True)
    batches = itertools.islice(batches, fold.progress.step, None)  # all drawn up front: skipping is exact
    lr = fold.optimizer.param_groups[0]["lr"]
    plan = EpochPlan(batches, n_steps, f"fold {fold.k}, epoch {epoch + 1}/{cfg.epochs}", epoch * n_steps)
    if train_epoch(learner, plan, fold.progress, job.ctx, job.stop_requested):
        files.save(at_start)
        files.finish()
        raise RunInterruptedError(f"stopped at {plan.label}, step {fold.progress.step} (saved); "
                                  f"{job.resume_hint()}")
    val = _validate(job, fold)
    if len(fold.split.val) and not math.isfinite(val["val_mae"]):
        loss = fold.progress.means().get("loss", math.nan)
        raise FaceageError(f"{plan.label}: the validation MAE is {val['val_mae']}: the model's ages are no "
                           f"longer finite (training diverged; mean training loss {loss:.4g}). Train with a "
                           f"lower --lr into a fresh --out.")
    fold.scheduler.step(epoch + 1)
    improved = cfg.keep == "best" and (not len(fold.split.val) or val["val_mae"] < fold.best_val_mae)
    if improved:
        fold.best_val_mae, fold.best_epoch = val["val_mae"], epoch + 1
    progress = fold.progress
    fold.epochs_done, fold.progress = epoch + 1, EpochProgress()
    terms = {name: value for name, value in progress.means().items() if name != "abs_err"}
    history = {"fold": fold.k, "epoch": epoch + 1, "lr": lr, **terms, "train_mae": epoch_mae(progress), **val,
               "img_s": progress.img_s(), "seconds": progress.seconds}
    files.save(fold.generator.get_state(), best=fold.model if improved else None, history=history)
    shown = " (average ".join(f"{v:.2f}" for v in val.values()) + (")" if len(val) > 1 else "")
    log.info("%s: loss %.4f, train MAE %.2f, val MAE %s%s, %.0f img/s", plan.label, progress.means()["loss"],
             epoch_mae(progress), shown, " (best)" if improved else "", progress.img_s())


def _build(job: TrainingJob, k: int, split: FoldSplit) -> Fold:
    """The fold's model (pretrained weights unless last.pt will replace them), optimiser, schedule, data
    generator, weight average and loss, all seeded from `seed + k`."""
    cfg, run, ctx = job.cfg, job.run, job.ctx
    ages = job.ages(split.train)
    target_mean, target_std = float(ages.mean()), float(ages.std()) or 1.0
    resuming = run.last_path(k).exists()
    torch.manual_seed(cfg.seed + k)
    pretrained = None if resuming else cfg.pretrained  # last.pt replaces the weights (and works offline)
    model, source = build_model(cfg.backbone, str(cfg.loss), pretrained, target_mean, target_std)
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
    return Fold(k, split, model, make_loss(str(cfg.loss), cfg.lambda1, cfg.lambda2, target_mean, target_std),
                optimizer, make_scheduler(optimizer, cfg), torch.Generator().manual_seed(cfg.seed + k), ema)


def _restore(job: TrainingJob, fold: Fold) -> None:
    """Load last.pt into the fold. The partial epoch's meters (sums over all ranks) go to rank 0 only,
    because the end of the epoch adds the ranks' meters together."""
    state = load_training_state(job.run.last_path(fold.k))
    fold.model.load_state_dict(state["model"])
    load_optimizer_state(fold.optimizer, state["optimizer"])
    fold.scheduler.load_state_dict(state["scheduler"])
    fold.generator.set_state(state["generator"])
    if fold.ema is not None:
        fold.ema.module.load_state_dict(state["ema"])
    set_rng_state(state["rng"], job.ctx.device)
    progress = EpochProgress(**state["progress"])
    fold.progress = progress if job.ctx.is_main else EpochProgress(step=progress.step)
    fold.epochs_done, fold.best_val_mae, fold.best_epoch = (state["epochs_done"], state["best_val_mae"],
                                                            state["best_epoch"])


def _validate(job: TrainingJob, fold: Fold) -> dict[str, float]:
    """Validation MAE of the model (`val_mae`) and of its weight average (`val_mae_ema`, with --ema)."""
    if not len(fold.split.val):
        return {"val_mae": math.nan, **({"val_mae_ema": math.nan} if fold.ema is not None else {})}
    val = {"val_mae": job.mae(fold.model, fold.split.val)}
    if fold.ema is not None:
        val["val_mae_ema"] = job.mae(fold.ema.module, fold.split.val)
    return val


def _wrap(model: AgeModel, job: TrainingJob) -> nn.Module:
    """The module the training steps call: DDP across ranks, then torch.compile when asked."""
    trainer: nn.Module = model
    if job.ctx.distributed:
        device_ids = [job.ctx.device.index] if job.ctx.device.type == "cuda" else None
        trainer = DistributedDataParallel(model, device_ids=device_ids)
    if job.cfg.compile:
        trainer = torch.compile(trainer)  # type: ignore[assignment]
    return trainer
