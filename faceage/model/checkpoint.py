"""Checkpoint files: atomic save and checked load (train writes them, train and predict read them).

A fold's last.pt holds everything the next training step depends on (model, optimiser and scheduler states,
epoch and step, the data generator and RNG states: see `faceage.train.fold`); best.pt holds the model and
the settings that rebuild it. Training writes them with `CheckpointWriter`, off the training thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
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


class CheckpointWriter:
    """Writes checkpoints on one background thread from CPU copies taken when `save` is called, so training
    goes on while a large file (vgg16_bn's last.pt: 1.1 GB) reaches the disk.

    One write is in flight at a time: `save` first waits for the previous one, so at most one CPU copy is
    held. A failed write raises FaceageError naming the file at the next `save` or `wait`; leaving the
    `with` block waits for the last write, so no file is left half-done when a fold ends or the process
    exits.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="faceage-checkpoint")
        self._pending: Future[None] | None = None

    def save(self, files: Sequence[tuple[Path, dict[str, Any]]]) -> None:
        """Write each (path, state) in order, atomically; tensors are copied to the CPU now (once each,
        however many states share them) and written in the background."""
        self.wait()
        memo: dict[int, Any] = {}
        copies = [(Path(path), _cpu_copy(state, memo)) for path, state in files]
        self._pending = self._pool.submit(_write_all, copies)

    def wait(self) -> None:
        """Block until the last write is on disk; FaceageError naming the file when it failed."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _write_all(files: list[tuple[Path, dict[str, Any]]]) -> None:
    for path, state in files:
        try:
            save_checkpoint(path, state)
        except Exception as exc:
            raise FaceageError(f"{path}: cannot write the checkpoint ({exc}); free disk space or fix the "
                               f"folder's permissions, then continue the run with --resume.") from exc


def _cpu_copy(value: Any, memo: dict[int, Any]) -> Any:
    """`value` with every tensor copied to the CPU and every dict and list rebuilt, so that training may
    change the originals in place while the copy is written; objects met twice are copied once."""
    if id(value) in memo:
        return memo[id(value)]
    copy: Any
    if isinstance(value, torch.Tensor):
        copy = value.detach().to("cpu", copy=True)
    elif isinstance(value, dict):
        copy = {key: _cpu_copy(item, memo) for key, item in value.items()}
    elif isinstance(value, (list, tuple)):
        copy = type(value)(_cpu_copy(item, memo) for item in value)
    else:
        return value  # numbers, strings, None: immutable
    memo[id(value)] = copy
    return copy
