"""A trained age model ready to predict: loaded from a run folder, a checkpoint or an exported ONNX file.

The model is rebuilt from what the run saved (backbone, loss, image sizes; the l2 target mean/std travel as
buffers in the state dict) with no pretrained download. A run folder's folds become one `FoldEnsemble`
whose age distribution is the mean of the folds' distributions; mean, std and the prediction come from
that average. The same module is what `faceage export` writes to ONNX, so torch and ONNX compute the same.

Inputs are training's test-time tensors (`faceage.model.preprocess`): the aligned crop resized to the run's
`resize` as the image cache does, its centre crop and the backbone's normalisation.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.files import read_yaml_mapping
from faceage.core.layout import PREDICTIONS_CSV, RUN_CONFIG
from faceage.model.checkpoint import load_checkpoint
from faceage.model.device import resolve_device
from faceage.model.losses import round_half_up
from faceage.model.network import AgeModel, InputNorm, build_model, from_probs, input_norm
from faceage.model.preprocess import preprocess as preprocess_crops

if TYPE_CHECKING:
    from faceage.align.detect.onnx import OnnxSession

MODEL_KEYS = ("backbone", "loss", "img_size", "resize")  # the settings that rebuild a model and its input
SAME_INPUT_KEYS = (*MODEL_KEYS, "tta_flip")  # what the folds of one ensemble must share
CHECKPOINTS = ("best.pt", "last.pt")  # a fold's model: best on validation, else the latest epoch
META_PREFIX = "faceage."
MODEL_HINT = "pass a run folder (with config.yaml), a fold's best.pt/last.pt, or an exported .onnx file"


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is and what its inputs must look like."""

    source: str  # the folder or file it was loaded from
    backbone: str
    loss: str
    img_size: int  # side of the centre crop the network sees
    resize: int  # side the aligned face is resized to before the crop (training's cache size)
    folds: tuple[int, ...]  # the folds averaged
    aligned: str | None  # the aligned folder the run trained on (its faces.csv says how it was aligned)
    flip: bool = False  # test-time flip: each face averaged with its mirror (inside the model and graph)
    alignment: tuple[str, int] | None = None  # (detector, crop side) recorded in an exported file

    @property
    def distribution(self) -> bool:
        """True for mv/softmax models (an age distribution); False for the l2 regression baseline."""
        return self.loss != "l2"

    @property
    def norm(self) -> InputNorm:
        """The input normalisation of the backbone, as training used it (derived from its name)."""
        return input_norm(self.backbone)


@dataclass(frozen=True)
class Ages:
    """Per-face results, float64: pred = round(mean) half up; std is 0 for l2; probs (N, 101) or None."""

    pred: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    probs: np.ndarray | None


class Estimator(Protocol):
    """Turns normalised crops (N, 3, img_size, img_size) float32 into ages."""

    info: ModelInfo

    def estimate(self, x: np.ndarray) -> Ages: ...


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


def output_names(info: ModelInfo) -> list[str]:
    """Names of FoldEnsemble's outputs (and of the exported graph's)."""
    return ["probs", "mean", "std"] if info.distribution else ["mean", "std"]


def to_ages(outputs: Sequence[np.ndarray], info: ModelInfo) -> Ages:
    """Ages from FoldEnsemble's outputs (torch or ONNX), with the prediction rounded half up."""
    named = dict(zip(output_names(info), outputs, strict=True))
    mean = np.asarray(named["mean"], dtype=np.float64)
    pred = round_half_up(torch.from_numpy(mean)).numpy()
    probs = named.get("probs")
    return Ages(pred, mean, np.asarray(named["std"], dtype=np.float64),
                None if probs is None else np.asarray(probs, dtype=np.float64))


class TorchEstimator:
    """A FoldEnsemble on a torch device, run in fp32 without gradients."""

    def __init__(self, ensemble: FoldEnsemble, info: ModelInfo, device: str = "auto") -> None:
        self.info = info
        self.device = resolve_device(device)
        self.ensemble = ensemble.to(self.device).eval()

    @torch.no_grad()
    def estimate(self, x: np.ndarray) -> Ages:
        outputs = self.ensemble(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return to_ages([o.float().cpu().numpy() for o in outputs], self.info)


class OnnxEstimator:
    """An exported model in onnxruntime (CUDA provider first when present); `provider` is the one the
    session runs on."""

    def __init__(self, session: OnnxSession, info: ModelInfo) -> None:
        self.session = session
        self.info = info
        self.input_name = session.get_inputs()[0].name
        self.provider = session.get_providers()[0]

    def estimate(self, x: np.ndarray) -> Ages:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}
        outputs = self.session.run(output_names(self.info), feed)
        return to_ages(outputs, self.info)


def load_estimator(model: str | Path | None = None, fold: int | None = None, device: str = "auto",
                   threads: int = 1) -> Estimator:
    """The model at `model`: a run folder (all folds averaged, or `fold`), a checkpoint, or an .onnx file;
    None: the bundled model (faceage/zoo), its checksum verified."""
    if model is None:
        if fold is not None:
            raise FaceageError("--fold picks a fold of a run folder; the bundled model has none (pass "
                               "--model RUN to predict with one of a run's folds).")
        from faceage.zoo import bundled_model

        return load_onnx(bundled_model(), device, threads)
    path = Path(model).expanduser()
    if path.suffix.lower() == ".onnx":
        if fold is not None:
            raise FaceageError(f"{path}: --fold picks a fold of a run folder; an exported model is already "
                               f"fixed (export it again with `faceage export RUN --fold {fold}`).")
        return load_onnx(path, device, threads)
    ensemble, info = load_ensemble(path, fold)
    return TorchEstimator(ensemble, info, device)


def load_ensemble(model: str | Path, fold: int | None = None) -> tuple[FoldEnsemble, ModelInfo]:
    """The torch model of a run folder (every fold with a checkpoint, or `fold`) or of one checkpoint file."""
    path = Path(model).expanduser()
    files: list[tuple[int | None, Path]]  # (fold, checkpoint); fold None: a lone checkpoint file
    saved: dict[str, Any] | None = None  # the run's config.yaml, checked against what each checkpoint carries
    if path.is_dir():
        files = [(k, file) for k, file in _fold_checkpoints(path, fold).items()]
        saved = read_yaml_mapping(path / RUN_CONFIG, "run config")
    elif path.is_file():
        if fold is not None:
            raise FaceageError(f"{path}: --fold picks a fold of a run folder, not of a checkpoint file; "
                               f"drop --fold or pass the run folder.")
        files = [(None, path)]
    else:
        raise FaceageError(f"{path}: no such file or folder; {MODEL_HINT}.")
    members, folds, used = [], [], []
    for k, file in files:
        state = load_checkpoint(file)
        settings = _checkpoint_settings(state, file, saved)
        members.append(_rebuild(state, settings, file))
        folds.append(int(state.get("fold", -1)) if k is None else k)
        used.append((file, settings))
        if k is not None and not (file.parent / PREDICTIONS_CSV).is_file():
            log.warning("fold %d of %s has not finished training; using its %s", k, path, file.name)
    settings = _one_input(used)
    info = ModelInfo(str(path), settings["backbone"], settings["loss"], int(settings["img_size"]),
                     int(settings["resize"]), tuple(folds), settings.get("images"),
                     bool(settings.get("tta_flip", False)))
    return FoldEnsemble(members, info.flip).eval(), info


def _one_input(used: list[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The settings every member shares (one preprocessing feeds them all); refuses members that differ."""
    first_file, first = used[0]
    for file, settings in used[1:]:
        differ = [key for key in SAME_INPUT_KEYS if settings.get(key) != first.get(key)]
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


def _checkpoint_settings(state: dict[str, Any], file: Path, saved: dict[str, Any] | None) -> dict[str, Any]:
    """The settings a checkpoint carries (best.pt and last.pt hold the `config` they were trained with);
    for an older last.pt, the run's config.yaml. A config.yaml that disagrees is named, not followed."""
    if isinstance(state.get("config"), dict):
        own = dict(state["config"])
        if saved is not None:
            differ = [f"{key}: config.yaml {saved.get(key)!r}, checkpoint {own.get(key)!r}"
                      for key in SAME_INPUT_KEYS if saved.get(key) != own.get(key)]
            if differ:
                log.warning("%s: the run's %s disagrees with the settings the checkpoint was trained with "
                            "(%s); using the checkpoint's", file, RUN_CONFIG, "; ".join(differ))
        return own
    config = file.parent.parent / RUN_CONFIG
    if saved is None and config.is_file():
        saved = read_yaml_mapping(config, "run config")
    if saved is not None:
        return saved
    raise FaceageError(f"{file}: the checkpoint holds no settings and {config} does not exist; pass the run "
                       f"folder, or the fold's best.pt (which carries its settings).")


def _rebuild(state: dict[str, Any], settings: dict[str, Any], file: Path) -> AgeModel:
    """The model a checkpoint was saved from: built with random weights (no download), then loaded."""
    missing = [key for key in MODEL_KEYS if key not in settings]
    if missing or "model" not in state:
        raise FaceageError(f"{file}: the checkpoint or its config lacks {missing or ['model']}; it was not "
                           f"written by `faceage train`. {MODEL_HINT[0].upper()}{MODEL_HINT[1:]}.")
    model, _ = build_model(settings["backbone"], settings["loss"], pretrained=None)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise FaceageError(f"{file}: the weights do not fit a {settings['backbone']} {settings['loss']} "
                           f"model ({str(exc).splitlines()[0]}); the checkpoint and its config disagree."
                           ) from exc
    return model.eval()


def load_onnx(path: Path, device: str = "auto", threads: int = 1) -> OnnxEstimator:
    """An exported model with the settings `faceage export` stored in its metadata."""
    from faceage.align.detect import onnx_session

    session = onnx_session(path, "ONNX model", f"a file written by `faceage export` (or export it again: "
                           f"`faceage export RUN --onnx {path}`)", device, threads)
    meta = session.get_modelmeta().custom_metadata_map
    try:
        info = ModelInfo(str(path), meta[META_PREFIX + "backbone"], meta[META_PREFIX + "loss"],
                         int(meta[META_PREFIX + "img_size"]), int(meta[META_PREFIX + "resize"]),
                         tuple(int(k) for k in meta[META_PREFIX + "folds"].split(",") if k),
                         meta.get(META_PREFIX + "aligned") or None,
                         meta.get(META_PREFIX + "tta_flip") == "True", _recorded(meta))
    except (KeyError, ValueError) as exc:
        raise FaceageError(f"{path}: not written by `faceage export` (metadata {exc} missing or bad); export "
                           f"the run with `faceage export RUN --onnx {path}`.") from None
    return OnnxEstimator(session, info)


def onnx_metadata(info: ModelInfo) -> dict[str, str]:
    """The settings an exported file carries, so `load_onnx` can preprocess for it."""
    values = {"backbone": info.backbone, "loss": info.loss, "img_size": info.img_size, "resize": info.resize,
              "folds": ",".join(str(k) for k in info.folds), "aligned": info.aligned or "",
              "tta_flip": info.flip}
    if info.alignment is not None:
        values.update(detector=info.alignment[0], align_size=info.alignment[1])
    return {META_PREFIX + key: str(value) for key, value in values.items()}


def _recorded(meta: dict[str, str]) -> tuple[str, int] | None:
    """The (detector, crop side) an exported file records for the faces it was trained on, if any."""
    detector, size = meta.get(META_PREFIX + "detector"), meta.get(META_PREFIX + "align_size")
    return (detector, int(size)) if detector and size else None


def preprocess(crops: Sequence[np.ndarray] | np.ndarray, info: ModelInfo) -> np.ndarray:
    """Aligned uint8 faces → the model's normalised input, through training's test path."""
    return preprocess_crops(crops, info.img_size, info.resize, info.norm)
