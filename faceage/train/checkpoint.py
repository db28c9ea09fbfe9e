"""Checkpoints: atomic save and checked load of a fold's training state (model, optimiser, scheduler, RNG).

A checkpoint holds everything the next step depends on, so training resumed from it computes exactly what an
uninterrupted run would have: the model, optimiser and scheduler states, the epoch and step reached, the
fold's data generator state and the global torch RNG states (dropout and the like).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from faceage.core.atomic import atomic_path
from faceage.core.errors import FaceageError

FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (plus a format tag) to `path` atomically: a crash leaves the previous file intact."""
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)


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


def rng_state() -> dict[str, Any]:
    """The global torch RNG states (CPU, and every CUDA device in use)."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured (CUDA states only where CUDA is in use)."""
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
