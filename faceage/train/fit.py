"""`faceage train`: fit every test fold of a manifest (or one), keep the best model on validation, predict.

`run_training` checks the manifest and every fold before any work, decodes the images once, then trains
each fold not yet finished (`fold.fit_fold`): `--resume` skips finished folds and continues the others to
the same result as an uninterrupted run. `runs.py` lays out the run folder, `loop.py` runs an epoch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from faceage.align.record import read_align_record
from faceage.core.atomic import remove_temporaries
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.layout import ALIGN_RECORD
from faceage.core.lock import BusyError
from faceage.evaluate.folds import FoldStats, fold_table, per_fold
from faceage.manifest.protocols import fold_ids, split_for_fold
from faceage.manifest.read import read_manifest
from faceage.model.device import autotune_convolutions, reuse_freed_memory
from faceage.model.network import input_norm
from faceage.train.balance import path_sources
from faceage.train.batches import DeviceImages
from faceage.train.cache import open_cache
from faceage.train.config import TrainConfig, parse_source_weights
from faceage.train.distributed import (
    DistContext,
    agree_on_failure,
    any_rank,
    barrier,
    cleanup_distributed,
    setup_distributed,
)
from faceage.train.fold import fit_fold
from faceage.train.job import RunInterruptedError, TrainingJob
from faceage.train.loop import stop_on_ctrl_c
from faceage.train.optim import check_optimizer
from faceage.train.runs import RunFolder


@dataclass(frozen=True)
class TrainResult:
    """Per-fold test metrics of the finished folds and where the run lives; `main` is False on DDP ranks
    other than 0, which print nothing."""

    run_dir: str
    folds: list[FoldStats]
    main: bool = True


def results_table(result: TrainResult) -> Table:
    """Each test fold's metrics, then their mean ± std across folds: report.md's per-fold table."""
    return fold_table(f"test folds of {result.run_dir}", result.folds)


def run_training(cfg: TrainConfig) -> TrainResult:
    """Train the folds `cfg` names into its run folder (cfg resolved by `runs.resolve_run_config`), holding
    the folder's lock for the whole job (a second job into it is refused at once)."""
    ctx = setup_distributed(cfg.device)
    autotune_convolutions(ctx.device)
    reuse_freed_memory(ctx.device)
    run = RunFolder(cfg.run_dir(), writer=ctx.is_main)
    created = not run.root.exists()
    try:
        with _hold_lock(run, ctx):
            try:
                return _train(cfg, run, ctx)
            except BaseException:
                if created and ctx.is_main:
                    run.close()
                    run.discard_if_untrained()  # a start that failed leaves no folder behind
                raise
    finally:
        run.close()
        if created and ctx.is_main:
            run.remove_if_only_lock()
        cleanup_distributed()


@contextlib.contextmanager
def _hold_lock(run: RunFolder, ctx: DistContext) -> Iterator[None]:
    """Rank 0 takes the run folder's lock and clears the temporaries a killed run left; every rank learns
    whether the folder was busy, so none waits for a job that will not start."""
    with contextlib.ExitStack() as held:
        busy: BusyError | None = None
        if ctx.is_main:
            try:
                held.enter_context(run.lock())
            except BusyError as exc:
                busy = exc
        if any_rank(busy is not None, ctx):
            raise busy or FaceageError(f"{run.root}: the run folder is in use by another process.")
        if ctx.is_main:
            remove_temporaries(run.root)
        yield


def _train(cfg: TrainConfig, run: RunFolder, ctx: DistContext) -> TrainResult:
    """Check the manifest and every fold before any work, decode the images once, train what is left."""
    if cfg.images is None:
        raise FaceageError("no aligned images folder: pass --images ALIGNED_DIR (the folder that "
                           "`faceage align` wrote) or set `images:` in the recipe.")
    check_optimizer(cfg)
    manifest = read_manifest(cfg.manifest_path(), Path(cfg.images), cfg.protocol)
    folds = _folds_to_train(manifest, cfg)
    splits = {k: split_for_fold(manifest, k) for k in folds}  # refuses leaks before any work
    _check_weighted_sources(cfg, manifest, np.concatenate([split.train for split in splits.values()]))
    for k, split in splits.items():
        if len(split.train) < cfg.batch_size:  # drop_last: not one step
            raise FaceageError(f"{cfg.manifest_path()}: fold {k} has {len(split.train)} training rows, "
                               f"fewer than --batch-size {cfg.batch_size}; lower the batch size.")
    if cfg.batch_size % ctx.world_size:
        raise FaceageError(f"--batch-size {cfg.batch_size} does not split among {ctx.world_size} "
                           f"processes; choose a multiple of {ctx.world_size}.")
    todo = [k for k in folds if not run.fold_finished(k, cfg.epochs)]
    barrier(ctx)  # every rank has read the run folder before rank 0 writes into it
    with agree_on_failure(ctx, "starting the run folder"):
        run.check_manifest(cfg.manifest_path())
        run.start(cfg)
    log.info("run %s: %s, %s loss, folds %s from %s on %s × %d", run.root, cfg.backbone, cfg.loss, folds,
             cfg.manifest_path(), ctx.device, ctx.world_size)
    if todo:
        data = _load_images(cfg, manifest, ctx)
        with stop_on_ctrl_c() as stop_requested:
            job = TrainingJob(cfg, manifest, data, run, ctx, stop_requested, _alignment(Path(cfg.images)))
            for k in folds:
                if k not in todo:
                    log.info("fold %d: finished earlier, skipped", k)
                elif any_rank(stop_requested(), ctx):
                    raise RunInterruptedError(f"stopped before fold {k}; {job.resume_hint()}")
                else:
                    fit_fold(job, k, splits[k])
    barrier(ctx)  # rank 0 has written every fold's predictions
    table = run.merge_predictions()
    scores = per_fold(table["pred"], table["age"], table["fold"], train_median=table["train_median"])
    return TrainResult(str(run.root), scores, ctx.is_main)


def _check_weighted_sources(cfg: TrainConfig, manifest: pd.DataFrame, train_rows: np.ndarray) -> None:
    """Refuse a `source_weights` name no training row has (a typo, or a source only in the test or
    validation part, would weight nothing and train the unweighted draw silently)."""
    present = set(path_sources(manifest["path"].to_numpy(str)[train_rows]))
    unknown = [name for name in parse_source_weights(cfg.source_weights) if name not in present]
    if unknown:
        raise FaceageError(f"--source-weights: {cfg.manifest_path()} has no training faces from source "
                           f"{', '.join(unknown)}; its training sources (top folders of the paths) are "
                           f"{', '.join(sorted(present))}.")


def _alignment(images: Path) -> dict[str, Any] | None:
    """The align record of the aligned folder (each kept model carries it, so predict aligns new photos as
    these faces were); None for a folder aligned before align.json existed, or not by `faceage align`."""
    record = read_align_record(images)
    if record is None:
        log.info("%s has no %s: the checkpoints will not record how its faces were aligned", images,
                 ALIGN_RECORD)
    return record


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
    with agree_on_failure(ctx, "building the image cache"):  # the others wait for it, then read it
        if ctx.is_main:
            images = open_cache(root, paths, size=cfg.resize, workers=cfg.workers)
    if not ctx.is_main:
        images = open_cache(root, paths, size=cfg.resize, workers=cfg.workers)
    return DeviceImages(images, manifest["age"].to_numpy(np.float32), ctx.device, crop=cfg.img_size,
                        mean=norm.mean, std=norm.std)
