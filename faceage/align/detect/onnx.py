"""onnxruntime sessions for every model faceage runs in it (detectors, exported age models): providers for
a device, session options, a checked model file, and a check of the provider a session really runs on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from faceage.core.console import log
from faceage.core.device import cuda_unavailable, parse_device
from faceage.core.errors import FaceageError

if TYPE_CHECKING:
    from typing import TypeAlias

    import onnxruntime

    OnnxSession: TypeAlias = onnxruntime.InferenceSession

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
# onnxruntime's default cuDNN search (EXHAUSTIVE) times every convolution algorithm for each new input
# shape; the detector sees a new shape with nearly every photo, so the heuristic choice is far cheaper.
CUDA_OPTIONS = {"cudnn_conv_algo_search": "HEURISTIC"}
Provider = str | tuple[str, dict[str, Any]]


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers (for `faceage doctor`)."""
    import onnxruntime

    return list(onnxruntime.get_available_providers())


def onnx_providers(device: str = "auto") -> list[Provider]:
    """onnxruntime execution providers for `device` (auto, cpu, cuda, cuda:N): CUDA first (with
    `CUDA_OPTIONS`, on GPU N) when the GPU build offers it, then CPU. The GPU build offers CUDA even when its
    CUDA libraries cannot load; `check_provider` tells after the session is made.
    """
    parsed = parse_device(device)
    has_cuda = CUDA in available_providers()
    if parsed.explicit_cuda and not has_cuda:
        raise cuda_unavailable(parsed, "this onnxruntime has no CUDA provider: `pip uninstall -y onnxruntime "
                                       "onnxruntime-gpu && pip install onnxruntime-gpu`")
    if has_cuda and parsed.kind != "cpu":
        options = {**CUDA_OPTIONS, **({"device_id": str(parsed.index)} if parsed.index is not None else {})}
        return [(CUDA, options), CPU]
    return [CPU]


def wants_cuda(device: str) -> bool:
    """Whether sessions for `device` ask for the CUDA provider (and so each hold a CUDA context)."""
    return any(provider_name(p) == CUDA for p in onnx_providers(device))


def provider_name(provider: Provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


def check_provider(session: OnnxSession, device: str, where: str) -> None:
    """After a session is made: when CUDA was asked for but the session runs on the CPU (onnxruntime falls
    back without a word when the CUDA or cuDNN libraries fail to load), refuse an explicit `cuda` and warn
    for `auto`. `where` names the model in the message."""
    if not wants_cuda(device) or CUDA in session.get_providers():
        return
    message = (f"{where}: onnxruntime's CUDA provider did not start (its CUDA or cuDNN libraries did not "
               f"load), so it runs on the CPU; install the onnxruntime-gpu build for this CUDA (see "
               f"`faceage doctor`)")
    if parse_device(device).explicit_cuda:
        raise FaceageError(f"{message}, or pass --device auto or cpu.")
    log.warning("%s.", message)


def new_session(model: str | bytes, device: str, threads: int, where: str) -> OnnxSession:
    """A session for an ONNX file or its bytes with our providers and options, checked by
    `check_provider`; onnxruntime's own errors (a corrupt or foreign file) pass through."""
    import onnxruntime

    session = onnxruntime.InferenceSession(model, sess_options=session_options(threads),
                                           providers=onnx_providers(device))
    check_provider(session, device, where)
    return session


def session_options(threads: int) -> onnxruntime.SessionOptions:
    """Session settings shared by both backends: `threads` intra-op threads, one inter-op, full graph opts,
    and no memory pattern: onnxruntime would plan a buffer for every input shape it meets, and the detector's
    photos and predict's last batches vary in shape, so the plans only raised the peak (1,000 photos with
    the bundled model: 470 → 376 MB, no slower)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    options.log_severity_level = 3  # errors only: `check_provider` reports a CUDA provider that fails
    return options


def onnx_session(path: Path, what: str, instead: str, device: str = "auto", threads: int = 1) -> OnnxSession:
    """An onnxruntime session for any model file (detectors, exported age models) with our providers and
    settings; `what` names the file in errors and `instead` says what to pass."""
    check_model_file(path, what, instead)
    try:
        return new_session(str(path), device, threads, f"{what} {path}")
    except FaceageError:
        raise
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
