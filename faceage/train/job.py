"""What every fold of one training run shares (`TrainingJob`), how it predicts a set of rows, and the one
interruption training raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from faceage.core.errors import StageInterruptedError
from faceage.evaluate.metrics import mae
from faceage.train.balance import path_sources
from faceage.train.batches import DeviceImages
from faceage.train.config import TrainConfig
from faceage.train.distributed import DistContext
from faceage.train.loop import predict
from faceage.train.runs import RunFolder


class RunInterruptedError(StageInterruptedError):
    """Ctrl-C stopped training after saving a consistent checkpoint; `--resume` continues it."""


@dataclass(frozen=True)
class TrainingJob:
    """What every fold of one run shares: settings, manifest, images on the device, run folder, place in
    the process group, whether Ctrl-C was pressed, and the align record of the images (None: the folder
    has no align.json), which each kept model carries."""

    cfg: TrainConfig
    manifest: pd.DataFrame
    data: DeviceImages
    run: RunFolder
    ctx: DistContext
    stop_requested: Callable[[], bool]
    alignment: dict[str, Any] | None = None

    def resume_hint(self) -> str:
        return f"continue with: faceage train --out {self.run.root} --resume"

    def ages(self, rows: np.ndarray) -> np.ndarray:
        return self.manifest["age"].to_numpy(np.float64)[rows]

    def sources(self, rows: np.ndarray) -> np.ndarray:
        return path_sources(self.manifest["path"].to_numpy(str)[rows])

    def predictions(self, model: nn.Module, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The model's predictions on `rows`, with the run's test-time flip (as predict and export do)."""
        batches = self.data.batches(rows, self.cfg.batch_size, train=False, generator=torch.Generator())
        return predict(model, batches, self.ctx.device, flip=self.cfg.tta_flip)  # type: ignore[arg-type]

    def mae(self, model: nn.Module, rows: np.ndarray) -> float:
        """MAE of the predictions on `rows` (every rank computes it: all make the same best-model choice)."""
        return mae(self.predictions(model, rows)["pred"], self.ages(rows))
