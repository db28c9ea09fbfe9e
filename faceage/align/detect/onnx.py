"""onnxruntime sessions for every model faceage runs in it (detectors, exported age models): providers for
a device, session options, and a checked model file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from faceage.core.errors import FaceageError

if TYPE_CHECKING:
    from typing import TypeAlias

    import onnxruntime

    OnnxSession: TypeAlias = onnxruntime.InferenceSession

DEVICES = ("auto", "cpu", "cuda")


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (for `faceage doctor`)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def onnx_providers(device: str = "auto") -> list[str]:
    """onnxruntime execution providers for `device`: CUDA first when the GPU build offers it, then CPU.

    With "auto", a machine without a usable GPU quietly gets the CPU (onnxruntime falls back when the CUDA
    provider cannot start; `session_options` keeps that fallback from printing warnings).
    """
    if device not in DEVICES:
        raise FaceageError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    has_cuda = "CUDAExecutionProvider" in available_providers()
    if device == "cuda" and not has_cuda:
        raise FaceageError(
            "device 'cuda' asked for, but this onnxruntime has no CUDA provider: run "
            "`pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu` "
            "(see `faceage doctor`), or pass device 'auto'/'cpu'"
        )
    if has_cuda and device != "cpu":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """Session settings shared by both backends: `threads` intra-op threads, one inter-op, full graph opts."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a missing GPU is not worth a warning per worker
    return options


def onnx_session(path: Path, what: str, instead: str, device: str = "auto", threads: int = 1) -> OnnxSession:
    """An onnxruntime session for any model file (detectors, exported age models) with our providers and
    settings; `what` names the file in errors and `instead` says what to pass."""
    import onnxruntime

    check_model_file(path, what, instead)
    try:
        return onnxruntime.InferenceSession(
            str(path), sess_options=session_options(threads), providers=onnx_providers(device)
        )
    except Exception as exc:  # onnxruntime raises its own types for corrupt or foreign files
        raise FaceageError(f"{path}: onnxruntime cannot load this {what} ({exc}); pass {instead}.") from exc


def check_model_file(path: Path, what: str, instead: str) -> None:
    """Fail with a clear message unless `path` is a readable file; `instead` says what to pass."""
    if not path.is_file():
        raise FaceageError(f"{what} {path} does not exist or is not a file: pass {instead}")
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise FaceageError(f"cannot read {what} {path} ({exc.strerror}): fix its permissions") from exc
