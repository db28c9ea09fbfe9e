"""`faceage train`: fit every test fold of a manifest (or one), keep the best model on validation, predict.

Each fold is independent and seeded from `seed + fold` (model initialisation, data order, crops, flips);
its state is checkpointed every epoch, so `--resume` skips finished folds and continues the others to the
same result as an uninterrupted run. `runs.py` lays out the run folder, `loop.py` runs an epoch.
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
from rich.table import Table
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.evaluate.metrics import FoldStats, per_fold, summarize_folds
from faceage.manifest.protocols import FoldSplit, fold_ids, split_for_fold
from faceage.manifest.read import read_manifest
from faceage.model.checkpoint import load_checkpoint, save_checkpoint
from faceage.model.losses import make_loss
from faceage.model.network import AgeModel, build_model, input_norm
from faceage.train.batches import DeviceImages, num_batches
from faceage.train.cache import open_cache
from faceage.train.config import TrainConfig
from faceage.train.distributed import DistContext, any_rank, barrier, cleanup_distributed, setup_distributed
from faceage.train.loop import EpochProgress, epoch_mae, predict, stop_on_ctrl_c, train_epoch
from faceage.train.optim import make_optimizer, make_scheduler
from faceage.train.rng import rng_state, set_rng_state
from faceage.train.runs import RunFolder


class RunInterruptedError(FaceageError):
    """Ctrl-C stopped training after saving a consistent checkpoint; `--resume` continues it."""


@dataclass(frozen=True)
class TrainResult:
    """Per-fold test metrics of the finished folds and where the run lives; `main` is False on DDP ranks
    other than 0, which print nothing."""

    run_dir: str
    folds: list[FoldStats]
    main: bool = True


def results_table(result: TrainResult) -> Table:
    """Per-fold test MAE and CS@5, then their mean ± std across folds."""
    table = Table(title=f"test folds of {result.run_dir}")
    for name in ("fold", "images", "MAE", "CS@5"):
        table.add_column(name, justify="right")
    for f in result.folds:
        table.add_row(str(f.fold), str(f.n), f"{f.mae:.3f}", f"{f.cs5:.3f}")
    if len(result.folds) > 1:
        s = summarize_folds(result.folds)
        n = str(sum(f.n for f in result.folds))
        mae, cs5 = f"{s.mae_mean:.3f} ± {s.mae_std:.3f}", f"{s.cs5_mean:.3f} ± {s.cs5_std:.3f}"
        table.add_row("mean ± std", n, mae, cs5, style="bold")
    return table


@dataclass
class FoldState:
    """What last.pt carries besides the model, optimiser and scheduler."""

    epochs_done: int = 0
    progress: EpochProgress = field(default_factory=EpochProgress)  # of the epoch in progress
    best_val_mae: float = math.inf
    best_epoch: int = 0


def run_training(cfg: TrainConfig) -> TrainResult:
    """Train the folds `cfg` names into its run folder (cfg resolved by `runs.resolve_run_config`)."""
    ctx = setup_distributed(cfg.device)
    run = RunFolder(cfg.run_dir(), writer=ctx.is_main)
    try:
        if cfg.images is None:
            raise FaceageError("no aligned images folder: pass --images ALIGNED_DIR (the folder that "
                               "`faceage align` wrote) or set `images:` in the recipe.")
        manifest = read_manifest(cfg.manifest_path(), Path(cfg.images), cfg.protocol)
        folds = _folds_to_train(manifest, cfg)
        splits = {k: split_for_fold(manifest, k) for k in folds}  # refuses leaks before any work
        for k, split in splits.items():
            if len(split.train) < cfg.batch_size:  # drop_last: not one step
                raise FaceageError(f"{cfg.manifest_path()}: fold {k} has {len(split.train)} training rows, "
                                   f"fewer than --batch-size {cfg.batch_size}; lower the batch size.")
        if cfg.batch_size % ctx.world_size:
            raise FaceageError(f"--batch-size {cfg.batch_size} does not split among {ctx.world_size} "
                               f"processes; choose a multiple of {ctx.world_size}.")
        todo = [k for k in folds if not run.fold_finished(k, cfg.epochs)]
        barrier(ctx)  # every rank has read the run folder before rank 0 writes into it
        run.check_manifest(cfg.manifest_path())
        run.start(cfg)
        log.info("run %s: %s, %s loss, folds %s from %s on %s × %d", run.root, cfg.backbone, cfg.loss, folds,
                 cfg.manifest_path(), ctx.device, ctx.world_size)
        if todo:
            data = _load_images(cfg, manifest, ctx)
            with stop_on_ctrl_c() as stop_requested:
                for k in folds:
                    if k not in todo:
                        log.info("fold %d: finished earlier, skipped", k)
                    elif any_rank(stop_requested(), ctx):
                        raise RunInterruptedError(f"stopped before fold {k}; {_resume_hint(run)}")
                    else:
                        _fit_fold(cfg, k, manifest, splits[k], data, run, ctx, stop_requested)
        barrier(ctx)  # rank 0 has written every fold's predictions
        table = run.merge_predictions()
        return TrainResult(str(run.root), per_fold(table["pred"], table["age"], table["fold"]), ctx.is_main)
    finally:
        run.close()
        cleanup_distributed()


def _folds_to_train(manifest: pd.DataFrame, cfg: TrainConfig) -> list[int]:
    present = fold_ids(manifest)
    if not present:
        raise FaceageError(f"{cfg.manifest_path()}: no test folds (every fold is -1); rebuild the manifest.")
    if cfg.fold is None:
        return present
    if cfg.fold not in present:
        raise FaceageError(f"--fold {cfg.fold}: {cfg.manifest_path()} has test folds {present}; pick one.")
    return [cfg.fold]


def _load_images(cfg: TrainConfig, manifest: pd.DataFrame, ctx: DistContext) -> DeviceImages:
    """The manifest's images, decoded once into the cache (rank 0 builds it first), on the device,
    normalised as `cfg.backbone` expects."""
    norm = input_norm(cfg.backbone)  # an unknown backbone is refused before the images are decoded
    paths = manifest["path"].astype(str).tolist()
    root = Path(str(cfg.images))
    if ctx.is_main:
        images = open_cache(root, paths, size=cfg.resize, workers=cfg.workers)
    barrier(ctx)
    if not ctx.is_main:
        images = open_cache(root, paths, size=cfg.resize, workers=cfg.workers)
    return DeviceImages(images, manifest["age"].to_numpy(np.float32), ctx.device, crop=cfg.img_size,
                        mean=norm.mean, std=norm.std)


def _resume_hint(run: RunFolder) -> str:
    return f"continue with: faceage train --out {run.root} --resume"


def _fit_fold(cfg: TrainConfig, k: int, manifest: pd.DataFrame, split: FoldSplit, data: DeviceImages,
              run: RunFolder, ctx: DistContext, stop_requested: Callable[[], bool]) -> None:
    """Train fold k (continuing its last.pt when there is one), then predict its test rows with best.pt."""
    n_steps = num_batches(len(split.train), cfg.batch_size, drop_last=True)  # ≥ 1: run_training checked
    ages = manifest["age"].to_numpy(np.float64)
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
    loss_fn = make_loss(cfg.loss, cfg.lambda1, cfg.lambda2, target_mean, target_std)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    generator = torch.Generator().manual_seed(cfg.seed + k)  # data order, crops and flips of this fold
    state = FoldState()
    if resuming:
        state = _restore(run.last_path(k), model, optimizer, scheduler, generator, ctx)
        log.info("fold %d: resuming after epoch %d, step %d", k, state.epochs_done, state.progress.step)
    trainer = _wrap(model, cfg, ctx)
    checkpoint = _Checkpointer(run, k, model, optimizer, scheduler, cfg)
    resume_hint = _resume_hint(run)
    for epoch in range(state.epochs_done, cfg.epochs):
        if epoch > state.epochs_done and any_rank(stop_requested(), ctx):
            raise RunInterruptedError(f"stopped after fold {k}, epoch {epoch} (saved); {resume_hint}")
        at_start = generator.get_state()
        progress = state.progress
        batches = data.batches(split.train, cfg.batch_size, True, generator, drop_last=True)
        batches = itertools.islice(batches, progress.step, None)  # all drawn up front: skipping is exact
        lr = optimizer.param_groups[0]["lr"]
        label = f"fold {k}, epoch {epoch + 1}/{cfg.epochs}"
        if train_epoch(trainer, loss_fn, model.decode, optimizer, batches, n_steps, ctx, progress, label,
                       stop_requested):
            checkpoint.last(at_start, epoch, state)
            raise RunInterruptedError(f"stopped at {label}, step {progress.step} (saved); {resume_hint}")
        val_mae = _mae(model, data, split.val, ages, cfg, ctx) if len(split.val) else math.nan
        scheduler.step()
        improved = not len(split.val) or val_mae < state.best_val_mae
        if improved:
            state.best_val_mae, state.best_epoch = val_mae, epoch + 1
            checkpoint.best(epoch + 1, val_mae)
        state.epochs_done, state.progress = epoch + 1, EpochProgress()
        run.add_history(_history_row(k, epoch + 1, lr, progress, val_mae))  # a rerun of it replaces it
        checkpoint.last(generator.get_state(), epoch + 1, state)
        log.info("%s: loss %.4f, train MAE %.2f, val MAE %.2f%s, %.0f img/s", label,
                 progress.means()["loss"], epoch_mae(progress), val_mae, " (best)" if improved else "",
                 progress.images / max(progress.seconds, 1e-9))
    _predict_test(cfg, k, manifest, split, data, model, run, ctx)


def _wrap(model: AgeModel, cfg: TrainConfig, ctx: DistContext) -> nn.Module:
    """The module the training steps call: DDP across ranks, then torch.compile when asked."""
    trainer: nn.Module = model
    if ctx.distributed:
        device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        trainer = DistributedDataParallel(model, device_ids=device_ids)
    if cfg.compile:
        trainer = torch.compile(trainer)  # type: ignore[assignment]
    return trainer


def _restore(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
             generator: torch.Generator, ctx: DistContext) -> FoldState:
    """Load last.pt into the fold's objects. The partial epoch's meters (sums over all ranks) go to rank 0
    only, because the end of the epoch adds the ranks' meters together."""
    ckpt = load_checkpoint(path)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    generator.set_state(ckpt["generator"])
    set_rng_state(ckpt["rng"])
    progress = EpochProgress(**ckpt["progress"])
    if not ctx.is_main:
        progress = EpochProgress(step=progress.step)
    return FoldState(ckpt["epochs_done"], progress, ckpt["best_val_mae"], ckpt["best_epoch"])


@dataclass(frozen=True)
class _Checkpointer:
    """Writes a fold's last.pt and best.pt (rank 0 only; atomic, so a crash keeps the previous file)."""

    run: RunFolder
    fold: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    cfg: TrainConfig

    def last(self, generator_state: torch.Tensor, epochs_done: int, state: FoldState) -> None:
        """Everything needed to continue after `epochs_done` epochs plus `state.progress.step` steps;
        `generator_state` is the generator at the start of the epoch in progress."""
        if self.run.writer:
            save_checkpoint(self.run.last_path(self.fold), {
                "fold": self.fold, "epochs_done": epochs_done, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "generator": generator_state, "rng": rng_state(), "progress": vars(state.progress).copy(),
                "best_val_mae": state.best_val_mae, "best_epoch": state.best_epoch,
            })

    def best(self, epoch: int, val_mae: float) -> None:
        """The model and the settings that rebuild it (backbone, loss, input size: `config`)."""
        if self.run.writer:
            save_checkpoint(self.run.best_path(self.fold), {
                "fold": self.fold, "epoch": epoch, "val_mae": val_mae, "model": self.model.state_dict(),
                "config": self.cfg.to_dict(),
            })


def _mae(model: AgeModel, data: DeviceImages, rows: np.ndarray, ages: np.ndarray, cfg: TrainConfig,
         ctx: DistContext) -> float:
    """MAE of the predictions on `rows` (every rank computes it, so all make the same best-model choice)."""
    batches = data.batches(rows, cfg.batch_size, train=False, generator=torch.Generator())
    return float(np.abs(predict(model, model.decode, batches, ctx.device)["pred"] - ages[rows]).mean())


def _history_row(k: int, epoch: int, lr: float, progress: EpochProgress, val_mae: float) -> dict[str, Any]:
    terms = {name: value for name, value in progress.means().items() if name != "abs_err"}
    return {"fold": k, "epoch": epoch, "lr": lr, **terms, "train_mae": epoch_mae(progress),
            "val_mae": val_mae, "img_s": progress.images / max(progress.seconds, 1e-9),
            "seconds": progress.seconds}


def _predict_test(cfg: TrainConfig, k: int, manifest: pd.DataFrame, split: FoldSplit, data: DeviceImages,
                  model: AgeModel, run: RunFolder, ctx: DistContext) -> None:
    """Predict the test rows with best.pt's weights; writing the predictions marks the fold finished."""
    barrier(ctx)  # rank 0 has written best.pt
    best = load_checkpoint(run.best_path(k))
    model.load_state_dict(best["model"])
    batches = data.batches(split.test, cfg.batch_size, train=False, generator=torch.Generator())
    out = predict(model, model.decode, batches, ctx.device)
    rows = manifest.iloc[split.test]
    table = pd.DataFrame({
        "path": rows["path"].to_numpy(), "age": rows["age"].to_numpy(), "age_std": rows["age_std"].to_numpy(),
        "subject": rows["subject"].to_numpy(), "fold": k, "pred": out["pred"], "mean": out["mean"],
        "std": out["std"],
    })
    run.write_fold_predictions(k, table, out.get("probs"))
    log.info("fold %d: test MAE %.3f on %d images (best.pt of epoch %s)", k,
             float(np.abs(table["pred"] - table["age"]).mean()), len(table), best["epoch"])
