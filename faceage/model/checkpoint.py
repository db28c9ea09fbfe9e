"""Checkpoint files: atomic save and checked load (train writes them, train and predict read them).

A fold's last.pt holds everything the next training step depends on (model, optimiser and scheduler states,
epoch and step, the data generator and RNG states: see `faceage.train.fit`); best.pt holds the model and the
settings that rebuild it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from faceage.core.atomic import atomic_path, output_error
from faceage.core.errors import FaceageError

FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (plus a format tag) to `path` atomically: a crash leaves the previous file intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, **state}, tmp)
    except RuntimeError as exc:  # torch reports a full disk as "PytorchStreamWriter failed writing file"
        raise output_error(path, exc) from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint onto the CPU; FaceageError naming the file when it is damaged or foreign."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FaceageError(f"{path}: no such checkpoint; train the fold first.") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise FaceageError(f"{path}: not a readable checkpoint ({exc}); delete it to train the fold again."
                           ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise FaceageError(f"{path}: not a faceage checkpoint (format {FORMAT}); delete it to train the fold "
                           f"again.")
    return state
