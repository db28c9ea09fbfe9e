"""A finished run's own faces and models, for the scripts that weigh its kept model against the others
(kept_choice.py, keep_weights.py): the manifest and fold 0's split, the cached images as training's test
path feeds them, and a model rebuilt from the run's settings with any of its weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from faceage.manifest.protocols import FoldSplit, split_for_fold
from faceage.manifest.read import read_manifest
from faceage.model.checkpoint import (
    KeptModel,
    ModelSettings,
    TrainingState,
    load_kept_model,
    load_training_state,
)
from faceage.model.device import reuse_freed_memory
from faceage.model.network import AgeModel, build_model, input_norm
from faceage.train.batches import DeviceImages
from faceage.train.cache import open_cache
from faceage.train.loop import predict


@dataclass
class RunFaces:
    """Fold 0 of the run at `root`: its kept model (best.pt), its training state (last.pt, kept with
    --keep-last), the manifest, the split and the cached faces."""

    root: Path
    best: KeptModel
    last: TrainingState
    manifest: pd.DataFrame
    split: FoldSplit
    data: DeviceImages
    config: dict[str, Any]

    @classmethod
    def open(cls, root: Path) -> RunFaces:
        """Load the run; its CPU forward passes keep freed memory for reuse, as training's do (about 3×
        faster batches of 64 faces)."""
        reuse_freed_memory(torch.device("cpu"))
        best = load_kept_model(root / "fold0" / "best.pt")
        if not (root / "fold0" / "last.pt").is_file():
            raise SystemExit(f"{root}/fold0/last.pt is missing: train with --keep-last to keep it")
        last = load_training_state(root / "fold0" / "last.pt")
        config = last["config"]
        manifest = read_manifest(Path(config["manifest"]), Path(config["images"]), config["protocol"])
        images = open_cache(Path(config["images"]), manifest["path"].tolist(), size=config["resize"])
        norm = input_norm(config["backbone"])
        data = DeviceImages(images, manifest["age"].to_numpy(np.float32), torch.device("cpu"),
                            crop=config["img_size"], mean=norm.mean, std=norm.std)
        return cls(root, best, last, manifest, split_for_fold(manifest, 0), data, config)

    def model(self, weights: dict[str, torch.Tensor]) -> AgeModel:
        """The run's network with `weights` (a state dict: best's, last's or the average's)."""
        settings = ModelSettings.of(self.best, self.root / "fold0" / "best.pt")
        model, _ = build_model(settings.backbone, settings.loss, pretrained=None)
        model.load_state_dict(weights)
        return model

    def ages(self, rows: np.ndarray) -> np.ndarray:
        return self.manifest["age"].to_numpy(np.float64)[rows]

    def predictions(self, model: torch.nn.Module, rows: np.ndarray, flip: bool | None = None
                    ) -> dict[str, np.ndarray]:
        """pred, mean and std of `rows` through training's test path (the run's flip unless `flip`)."""
        batches = self.data.batches(rows, 64, train=False, generator=torch.Generator())
        use_flip = self.config["tta_flip"] if flip is None else flip
        return predict(model, batches, torch.device("cpu"), flip=use_flip)  # type: ignore[arg-type]
