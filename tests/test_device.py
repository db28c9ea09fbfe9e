"""One device vocabulary (auto, cpu, cuda, cuda:N) for torch and onnxruntime: parsed once, and CUDA named
on a machine without it is the same one message from predict, align and train (CI has no GPU)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import Capsys, run_main

from faceage.align.detect.onnx import CUDA, available_providers, onnx_providers
from faceage.core.device import Device, parse_device
from faceage.core.errors import FaceageError
from faceage.model.device import resolve_device

no_cuda = pytest.mark.skipif(torch.cuda.is_available() or CUDA in available_providers(),
                             reason="this machine has CUDA")


@pytest.mark.parametrize(("text", "parsed"), [
    ("auto", Device("auto")), ("cpu", Device("cpu")), ("cuda", Device("cuda")), ("cuda:1", Device("cuda", 1)),
    (" CUDA:0 ", Device("cuda", 0)),
])
def test_the_accepted_devices(text: str, parsed: Device) -> None:
    assert parse_device(text) == parsed
    assert parse_device(parsed.text) == parsed


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:x", "cpu:0", "auto:1", "cuda:0:1", "", "mps"])
def test_anything_else_is_refused_listing_the_choices(text: str) -> None:
    with pytest.raises(FaceageError, match=r"choose auto, cpu, cuda or cuda:N"):
        parse_device(text)


@no_cuda
def test_both_runtimes_say_cuda_is_not_available_in_the_same_words() -> None:
    with pytest.raises(FaceageError, match=r"^--device cuda:0: CUDA is not available \(torch sees no CUDA"):
        resolve_device("cuda:0")
    with pytest.raises(FaceageError, match=r"^--device cuda:1: CUDA is not available \(this onnxruntime"):
        onnx_providers("cuda:1")
    assert resolve_device("auto") == torch.device("cpu")
    assert onnx_providers("auto") == ["CPUExecutionProvider"]


@no_cuda
def test_predict_align_and_train_give_one_message_for_cuda_without_cuda(
        morph_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capsys) -> None:
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / photo.name).symlink_to(photo)
    commands = {
        "predict": ["predict", str(photo), "--device", "cuda:0"],
        "align": ["align", str(tmp_path / "raw"), str(tmp_path / "aligned"), "--device", "cuda:0"],
        "train": ["train", "--manifest", str(tmp_path / "m.csv"), "--images", str(tmp_path), "--protocol",
                  "rs", "--device", "cuda:0", "--out", str(tmp_path / "run")],
    }
    for name, args in commands.items():
        code, printed = run_main(args, monkeypatch, capsys)
        assert code == 2, name
        assert printed.count("CUDA is not available") == 1, (name, printed)
        assert "--device cuda:0" in printed and "unknown device" not in printed, name
    assert not (tmp_path / "aligned" / "faces.csv").exists() and not (tmp_path / "run").exists()
