"""A fold in training (`Fold`: the objects its checkpoint saves and where it stands) and the files it is
saved to (`FoldFiles`: last.pt, best.pt and its history rows, by the spec of `faceage.model.checkpoint`).

Checkpoints are written from CPU copies on a background thread while the next epoch trains; the ranks of a
DDP job agree at each checkpoint whether rank 0's writing failed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from timm.scheduler.scheduler import Scheduler
from timm.utils import ModelEmaV3
from torch import nn

from faceage.manifest.protocols import FoldSplit
from faceage.model.checkpoint import FORMAT, CheckpointWriter, KeptModel, TrainingState
from faceage.model.losses import AgeLoss
from faceage.model.network import AgeModel
from faceage.train.distributed import agree_on_failure
from faceage.train.job import TrainingJob
from faceage.train.loop import EpochProgress
from faceage.train.rng import rng_state


@dataclass
class Fold:
    """A fold in training: the objects its checkpoint saves and restores, and where it stands."""

    k: int
    split: FoldSplit
    model: AgeModel
    loss_fn: AgeLoss
    optimizer: torch.optim.Optimizer
    scheduler: Scheduler
    generator: torch.Generator  # data order, crops and flips of this fold
    ema: ModelEmaV3 | None  # the weight average (`--ema`), validated beside the model
    epochs_done: int = 0
    progress: EpochProgress = field(default_factory=EpochProgress)  # of the epoch in progress
    best_val_mae: float = math.inf
    best_epoch: int = 0


class FoldFiles:
    """Writes a fold's last.pt, best.pt and history rows (rank 0 only; files atomic, so a crash keeps the
    previous one). Every rank calls `save` and `finish` at the same points: they are where the ranks agree
    whether the writing failed. Leaving the `with` block waits for the last write."""

    def __init__(self, job: TrainingJob, fold: Fold) -> None:
        self.job, self.fold = job, fold
        self.writer = CheckpointWriter()

    def save(self, generator_state: torch.Tensor, best: nn.Module | None = None,
             history: dict[str, Any] | None = None) -> None:
        """last.pt: everything needed to continue after `fold.epochs_done` epochs plus `fold.progress.step`
        steps (`generator_state`: the generator at the start of the epoch in progress); with `best` (the
        raw model or its average), also best.pt. Written in the background; the previous write's failure
        raises here."""
        job, fold, run = self.job, self.fold, self.job.run
        with agree_on_failure(job.ctx, f"saving fold {fold.k}'s checkpoint"):
            if not run.writer:
                return
            if history is not None:
                run.add_history(history)  # a rerun of the epoch replaces its row
            files: list[tuple[Path, KeptModel | TrainingState]] = []
            if best is not None:
                files.append((run.best_path(fold.k), self.kept(best.state_dict())))
            files.append((run.last_path(fold.k), self._training_state(generator_state)))
            self.writer.save(files)

    def kept(self, weights: dict[str, Any]) -> KeptModel:
        """best.pt's record for `weights` (the model kept for the fold; `kept.py` adds its calibration)."""
        kept = KeptModel(format=FORMAT, kind="kept", fold=self.fold.k, epoch=self.fold.best_epoch,
                         val_mae=self.fold.best_val_mae, model=weights, config=self.job.cfg.to_dict(),
                         kept=self.job.cfg.keep)
        if self.job.alignment is not None:
            kept["alignment"] = self.job.alignment
        return kept

    def _training_state(self, generator_state: torch.Tensor) -> TrainingState:
        fold = self.fold
        state = TrainingState(
            format=FORMAT, kind="training", fold=fold.k, epochs_done=fold.epochs_done,
            model=fold.model.state_dict(),
            optimizer=fold.optimizer.state_dict(), scheduler=fold.scheduler.state_dict(),
            generator=generator_state, rng=rng_state(self.job.ctx.device), progress=vars(fold.progress),
            best_val_mae=fold.best_val_mae, best_epoch=fold.best_epoch, config=self.job.cfg.to_dict())
        if fold.ema is not None:
            state["ema"] = fold.ema.module.state_dict()
        return state

    def finish(self) -> None:
        """Wait until rank 0's files are on disk (every rank returns only then), or all raise its error."""
        with agree_on_failure(self.job.ctx, f"saving fold {self.fold.k}'s checkpoint"):
            self.writer.wait()

    def __enter__(self) -> FoldFiles:
        self.writer.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.writer.__exit__(kind, error, trace)
