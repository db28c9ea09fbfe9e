"""The global torch RNG states a checkpoint carries, so a resumed fold draws what an uninterrupted one would
(dropout and the like).

Only the CPU state and the state of the process's own CUDA device are saved: a run may resume on another
number of GPUs (saved on 8, resumed on 1), and every rank of a DDP job keeps the same CUDA state (all are
seeded alike and draw alike), so rank 0's state is every rank's.
"""

from __future__ import annotations

from typing import Any

import torch


def rng_state(device: torch.device) -> dict[str, Any]:
    """The CPU RNG state, and that of `device` when it is a CUDA device in use."""
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda" and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore what `rng_state` captured; the CUDA state goes to `device` alone (none on a CPU run)."""
    torch.set_rng_state(state["cpu"])
    saved = state.get("cuda")
    if saved is not None and device.type == "cuda":
        if isinstance(saved, (list, tuple)):  # written before per-device states: one per visible GPU
            saved = saved[min(device.index or 0, len(saved) - 1)]
        torch.cuda.set_rng_state(saved, device)
