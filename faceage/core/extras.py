"""The optional parts of an installation, declared once: which extra brings which modules, and the one
message a command gives when it needs one that is not installed.

The core package aligns, builds manifests, evaluates and predicts with exported models (onnxruntime);
training (and predicting with a run folder or checkpoint) needs `faceage[train]`, ONNX export
`faceage[export]` as well, and the SCRFD detector `faceage[insightface]`.
"""

from __future__ import annotations

import importlib.util

from faceage.core.errors import FaceageError

EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("torch", "torchvision", "timm"),
    "export": ("torch", "timm", "onnx", "onnxscript"),
    "insightface": ("insightface",),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` this installation cannot import."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require_extra(extra: str, what: str) -> None:
    """Refuse `what` (a command or feature) when the modules of `extra` are missing, saying what to
    install."""
    missing = missing_modules(extra)
    if missing:
        raise FaceageError(f"{what} needs {', '.join(missing)}, which this installation lacks: "
                           f"pip install 'faceage[{extra}]' (the README's Install section says which torch "
                           f"build to take).")
