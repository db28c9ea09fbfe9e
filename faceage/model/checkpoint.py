"""Checkpoint files: their one spec, atomic save, and a load that validates every field (train writes them,
train and predict read them).

Two kinds, each a typed dict declared here and nowhere else:
- `KeptModel` (a fold's best.pt): the model that tests the fold, the epoch it came from, the settings that
  rebuild it (`config`), its calibration and the alignment of the faces it learned from (align.json).
- `TrainingState` (a fold's last.pt): everything the next training step depends on (model, optimiser and
  scheduler states, epoch and step, the data generator and RNG states).
`load_checkpoint` refuses a file whose fields are missing or of the wrong type, naming the file and the
field. Format 1 files (written before `kind` and `alignment` existed) still load. Training writes them with
`CheckpointWriter`, off the training thread.
"""

from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NotRequired, TypedDict, cast, get_args, get_origin, get_type_hints

import torch

from faceage.core.atomic import atomic_path, output_error
from faceage.core.errors import FaceageError
from faceage.model.losses import loss_class

FORMAT = 2
READABLE_FORMATS = (1, 2)
MAX_SIDE = 4096  # the largest img_size / resize a checkpoint may ask for


class KeptModel(TypedDict):
    """best.pt: the model kept for the fold (lowest validation MAE, the last epoch, or the weight average)."""

    format: int
    kind: NotRequired[Literal["kept"]]
    fold: int
    epoch: int
    val_mae: float
    model: dict[str, Any]  # state dict
    config: dict[str, Any]  # the run's settings (TrainConfig.to_dict()); `ModelSettings` rebuilds from it
    kept: NotRequired[str]  # best, last or ema (format 1 files from before: best)
    calibration: NotRequired[dict[str, Any]]  # the std scale's record (train/calibrate.py)
    alignment: NotRequired[dict[str, Any]]  # the align.json of the faces it trained on


class TrainingState(TypedDict):
    """last.pt: what continues a fold after `epochs_done` epochs and `progress["step"]` steps."""

    format: int
    kind: NotRequired[Literal["training"]]
    fold: int
    epochs_done: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    generator: torch.Tensor  # the data generator's state at the start of the epoch in progress
    rng: dict[str, Any]
    progress: dict[str, Any]  # EpochProgress of the epoch in progress
    best_val_mae: float
    best_epoch: int
    config: dict[str, Any]
    ema: NotRequired[dict[str, Any]]  # the weight average's state dict (--ema)


Checkpoint = KeptModel | TrainingState


@dataclass(frozen=True)
class ModelSettings:
    """The settings in a checkpoint's `config` that rebuild its model and its input, validated."""

    backbone: str
    loss: str
    img_size: int
    resize: int
    tta_flip: bool = False
    images: str | None = None  # the aligned folder it trained on

    @classmethod
    def of(cls, checkpoint: "Checkpoint", where: str | Path) -> "ModelSettings":
        """The settings `checkpoint` was trained with; FaceageError naming `where` and the bad field."""
        config = checkpoint["config"]
        try:
            settings = cls(**{name: config[name] for name in ("backbone", "loss", "img_size", "resize")},
                           tta_flip=config.get("tta_flip", False), images=config.get("images"))
        except KeyError as exc:
            raise _bad(where, f"config.{exc.args[0]}", "is missing") from None
        for name, kind in (("backbone", str), ("loss", str), ("img_size", int), ("resize", int),
                           ("tta_flip", bool)):
            value = getattr(settings, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise _bad(where, f"config.{name}", f"is {value!r}, not {kind.__name__}")
        if not 1 <= settings.img_size <= settings.resize <= MAX_SIDE:
            raise _bad(where, "config.img_size", f"{settings.img_size} with resize {settings.resize} is not "
                                                 f"1 ≤ img_size ≤ resize ≤ {MAX_SIDE}")
        try:
            loss_class(settings.loss)
        except FaceageError as exc:
            raise _bad(where, "config.loss", str(exc)) from None
        return settings


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write `state` (plus the format tag) to `path` atomically: a crash leaves the previous file intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save({**state, "format": FORMAT}, tmp)
    except RuntimeError as exc:  # torch reports a full disk as "PytorchStreamWriter failed writing file"
        raise output_error(path, exc) from exc


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint onto the CPU and validate it against its kind's spec; FaceageError naming the file
    (and the field) when it is damaged, foreign, or lacks what its kind needs."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FaceageError(f"{path}: no such checkpoint; train the fold first.") from None
    except Exception as exc:  # torch raises many types for a damaged file
        raise FaceageError(f"{path}: not a readable checkpoint ({exc}); delete it to train the fold again."
                           ) from exc
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise FaceageError(f"{path}: not a faceage checkpoint (formats {READABLE_FORMATS}); delete it to "
                           f"train the fold again.")
    spec: type[KeptModel] | type[TrainingState] = TrainingState if "optimizer" in state else KeptModel
    _validate(state, spec, path)
    return cast(Checkpoint, state)


def load_kept_model(path: str | Path) -> KeptModel:
    """A best.pt (or any checkpoint holding a kept model); a last.pt given instead is refused by name."""
    state = load_checkpoint(path)
    if "optimizer" in state:
        raise FaceageError(f"{path}: a training state (last.pt), not a kept model; pass the fold's best.pt.")
    return cast(KeptModel, state)


def load_training_state(path: str | Path) -> TrainingState:
    """A last.pt; anything else is refused by name."""
    state = load_checkpoint(path)
    if "optimizer" not in state:
        raise FaceageError(f"{path}: not a training state (last.pt); delete it to train the fold again.")
    return cast(TrainingState, state)


def _validate(state: dict[str, Any], spec: type[KeptModel] | type[TrainingState], path: Path) -> None:
    """Every required field of `spec` present, every field present of its declared type."""
    hints = get_type_hints(spec)
    required: frozenset[str] = getattr(spec, "__required_keys__")  # noqa: B009 - mypy cannot see it
    for name in sorted(required - state.keys()):
        raise _bad(path, name, "is missing")
    for name, hint in hints.items():
        if name in state and not _is_a(state[name], hint):
            raise _bad(path, name, f"is a {type(state[name]).__name__}, not {_describe(hint)}")


def _is_a(value: Any, hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Literal:
        return value in get_args(hint)
    kind = origin or hint
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    return f"one of {get_args(hint)}" if origin is Literal else getattr(origin or hint, "__name__", str(hint))


def _bad(where: str | Path, field: str, what: str) -> FaceageError:
    return FaceageError(f"{where}: the checkpoint's field '{field}' {what}; it was not written by this "
                        f"faceage's `faceage train` (or was edited). Train the fold again, or pass another "
                        f"checkpoint.")


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

    def save(self, files: Sequence[tuple[Path, Mapping[str, Any]]]) -> None:
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

    def __enter__(self) -> "CheckpointWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _write_all(files: list[tuple[Path, Mapping[str, Any]]]) -> None:
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
