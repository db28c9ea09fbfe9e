"""A trained model in torch: a run folder's folds (or one checkpoint) rebuilt from what their best.pt
records, averaged as one `FoldEnsemble`; the same module is what `faceage export` writes to ONNX, so torch
and ONNX compute the same.

The model is rebuilt from the checkpoint's settings (backbone, loss, image sizes; the l2 target mean/std
travel as buffers in the state dict) with no pretrained download. A run folder's folds become one ensemble
whose age distribution is the mean of the folds' distributions; mean, std and the prediction come from
that average.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from faceage.align.record import settings_from_record
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.layout import PREDICTIONS_CSV, RUN_CONFIG
from faceage.model.calibration import StdBands
from faceage.model.checkpoint import Checkpoint, ModelSettings, load_checkpoint
from faceage.model.device import resolve_device, reuse_freed_memory
from faceage.model.network import AgeModel, build_model, from_probs
from faceage.predict.info import Ages, ModelInfo, to_ages

CHECKPOINTS = ("best.pt", "last.pt")  # a fold's model: best on validation, else the latest epoch
MODEL_HINT = "pass a run folder (with config.yaml), a fold's best.pt/last.pt, or an exported .onnx file"


class FoldEnsemble(nn.Module):
    """The folds' models as one module: their age distributions averaged, then mean and std of the average
    (the std times the mean of the folds' calibration scales).

    Distribution heads return (probs (N, 101), mean (N,), std (N,)); l2 models return (mean, std) with the
    folds' regressed ages averaged and std = 0 (a regression carries no spread). One member = one fold.
    With `flip` (the run's test-time flip), each member averages every face with its mirror image first,
    inside the module, so the exported graph does the same.
    """

    def __init__(self, members: Sequence[AgeModel], flip: bool = False) -> None:
        super().__init__()
        kinds = {m.head_kind for m in members}
        if len(kinds) != 1:
            raise ValueError(f"members must share one head kind, got {sorted(kinds)}")
        self.members: Sequence[AgeModel] = nn.ModuleList(members)  # type: ignore[assignment]
        self.distribution = kinds == {"distribution"}
        self.flip = flip

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        if not self.distribution:
            ages = torch.stack([m.regressed(x, self.flip) for m in self.members]).mean(0)
            return ages, torch.zeros_like(ages)
        prediction = from_probs(torch.stack([m.probs(x, self.flip) for m in self.members]).mean(0))
        scale = torch.stack([m.std_scale.float() for m in self.members]).mean()  # each fold's calibration
        return prediction.probs, prediction.mean, prediction.std * scale  # type: ignore[return-value]


class TorchEstimator:
    """A FoldEnsemble on a torch device, run in fp32 without gradients."""

    def __init__(self, ensemble: FoldEnsemble, info: ModelInfo, device: str = "auto") -> None:
        self.info = info
        self.device = resolve_device(device)
        reuse_freed_memory(self.device)
        self.ensemble = ensemble.to(self.device).eval()

    @torch.no_grad()
    def estimate(self, x: np.ndarray) -> Ages:
        outputs = self.ensemble(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return to_ages([o.float().cpu().numpy() for o in outputs], self.info)


def load_ensemble(model: str | Path, fold: int | None = None) -> tuple[FoldEnsemble, ModelInfo]:
    """The torch model of a run folder (every fold with a checkpoint, or `fold`) or of one checkpoint file,
    from the settings each checkpoint records (validated by `faceage.model.checkpoint`)."""
    path = Path(model).expanduser()
    files: list[tuple[int | None, Path]]  # (fold, checkpoint); fold None: a lone checkpoint file
    if path.is_dir():
        files = [(k, file) for k, file in _fold_checkpoints(path, fold).items()]
    elif path.is_file():
        if fold is not None:
            raise FaceageError(f"{path}: --fold picks a fold of a run folder, not of a checkpoint file; "
                               f"drop --fold or pass the run folder.")
        files = [(None, path)]
    else:
        raise FaceageError(f"{path}: no such file or folder; {MODEL_HINT}.")
    members, folds, used = [], [], []
    alignment = None
    bands: list[StdBands | None] = []
    for k, file in files:
        state = load_checkpoint(file)
        settings = ModelSettings.of(state, file)
        members.append(_rebuild(state["model"], settings, file))
        folds.append(state["fold"] if k is None else k)
        used.append((file, settings))
        record = state.get("alignment")
        if alignment is None and isinstance(record, dict):
            alignment = settings_from_record(record, f"{file} (its alignment)")
        bands.append(_bands(state, file))
        if k is not None and not (file.parent / PREDICTIONS_CSV).is_file():
            log.warning("fold %d of %s has not finished training; using its %s", k, path, file.name)
    settings = _one_input(used)
    info = ModelInfo(str(path), settings.backbone, settings.loss, settings.img_size, settings.resize,
                     tuple(folds), settings.images, settings.tta_flip, alignment,
                     identity=_identity([file for _, file in files]), std_bands=_mean_bands(bands))
    return FoldEnsemble(members, info.flip).eval(), info


def _bands(state: Checkpoint, file: Path) -> StdBands | None:
    """The std's factors per predicted-age band a kept model's calibration record holds, if any."""
    calibration = state.get("calibration")
    record = calibration.get("bands") if isinstance(calibration, dict) else None
    if record is None:
        return None
    try:
        return StdBands.from_record(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise FaceageError(f"{file}: the checkpoint's field 'calibration.bands' is damaged ({exc}); train "
                           f"the fold again, or pass another checkpoint.") from None


def _mean_bands(bands: list[StdBands | None]) -> StdBands | None:
    """One set of band factors for an ensemble: the folds' averaged, as their scales are (None unless every
    fold has bands over the same edges)."""
    if not bands or any(b is None for b in bands) or len({b.edges for b in bands if b is not None}) != 1:
        return None
    known = [b for b in bands if b is not None]
    factors = np.mean([b.factors for b in known], axis=0)
    return StdBands(known[0].edges, tuple(float(f) for f in factors))


def _identity(files: list[Path]) -> str:
    """What tells these checkpoints from others without reading gigabytes: names, sizes and times."""
    digest = hashlib.blake2b(digest_size=8)
    for file in files:
        stat = file.stat()
        digest.update(f"{file.resolve()}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return f"torch:{digest.hexdigest()}"


def _one_input(used: list[tuple[Path, ModelSettings]]) -> ModelSettings:
    """The settings every member shares (one preprocessing feeds them all); refuses members that differ."""
    first_file, first = used[0]
    for file, settings in used[1:]:
        differ = [key for key, value in asdict(settings).items()
                  if key != "images" and value != getattr(first, key)]
        if differ:
            raise FaceageError(f"{file} and {first_file} were trained with different {differ}; their folds "
                               f"cannot be averaged. Pass one fold with --fold.")
    return first


def _fold_checkpoints(run: Path, fold: int | None) -> dict[int, Path]:
    """fold → checkpoint (best.pt, else last.pt) of a run folder; `fold` narrows it to one."""
    if not (run / RUN_CONFIG).is_file():
        raise FaceageError(f"{run}: not a run folder (no {RUN_CONFIG}); {MODEL_HINT}.")
    found: dict[int, Path] = {}
    for folder in run.iterdir():
        match = re.fullmatch(r"fold(\d+)", folder.name)
        if match and folder.is_dir():
            file = next((folder / n for n in CHECKPOINTS if (folder / n).is_file()), None)
            if file is not None:
                found[int(match.group(1))] = file
    if not found:
        raise FaceageError(f"{run}: no fold has a checkpoint ({' or '.join(CHECKPOINTS)}); train it first.")
    found = dict(sorted(found.items()))
    if fold is None:
        return found
    if fold not in found:
        raise FaceageError(f"--fold {fold}: {run} has trained folds {list(found)}; pick one of them.")
    return {fold: found[fold]}


def _rebuild(weights: dict[str, Tensor], settings: ModelSettings, file: Path) -> AgeModel:
    """The model a checkpoint was saved from: built with random weights (no download), then loaded."""
    model, _ = build_model(settings.backbone, settings.loss, pretrained=None)
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise FaceageError(f"{file}: the weights do not fit a {settings.backbone} {settings.loss} model "
                           f"({str(exc).splitlines()[0]}); the checkpoint and its config disagree.") from exc
    return model.eval()
