"""`faceage export`: ONNX with a dynamic batch axis that onnxruntime runs like torch, on real aligned faces.

Uses the run test_predict.py trains (align → manifest → train on 40 MORPH photos, two folds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from test_predict import trained_run  # noqa: F401 - the run test_predict.py builds (once a session)
from typer.testing import CliRunner

import faceage.predict.export as export
from faceage.cli import app
from faceage.core.errors import FaceageError
from faceage.model.network import build_model
from faceage.predict.estimator import load_estimator
from faceage.predict.export import PARITY_TOLERANCE, check_faces, export_onnx, parity, write_onnx
from faceage.predict.info import ModelInfo
from faceage.predict.onnx_model import OnnxEstimator
from faceage.predict.photos import predict_images
from faceage.predict.torch_model import FoldEnsemble, TorchEstimator


@pytest.fixture(scope="module")
def exported(trained_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # noqa: F811
    """Both folds exported through the CLI."""
    target = tmp_path_factory.mktemp("onnx") / "both.onnx"
    result = CliRunner().invoke(app, ["export", str(trained_run), "--onnx", str(target)])
    assert result.exit_code == 0, result.output
    assert "folds [0, 1]" in result.output and "max |Δ| CPU" in result.output
    return target


def test_onnx_matches_torch_on_real_faces(trained_run: Path, exported: Path) -> None:  # noqa: F811
    graph = onnx.load(exported).graph
    assert [o.name for o in graph.output] == ["probs", "mean", "std"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    onnx_model = load_estimator(exported, device="cpu")
    torch_model = load_estimator(trained_run, device="cpu")
    assert isinstance(onnx_model, OnnxEstimator) and onnx_model.info.folds == (0, 1)
    assert (onnx_model.info.img_size, onnx_model.info.resize) == (56, 64)
    x = check_faces(torch_model.info, limit=12)  # real aligned faces, decoded as training does
    for batch in (x[:1], x[:5], x):  # the dynamic batch axis
        got, want = onnx_model.estimate(batch), torch_model.estimate(batch)
        assert got.probs is not None and want.probs is not None
        assert np.abs(got.probs - want.probs).max() < PARITY_TOLERANCE
        np.testing.assert_allclose(got.mean, want.mean, atol=1e-3)
        np.testing.assert_allclose(got.std, want.std, atol=1e-3)


def test_predict_with_the_onnx_file(trained_run: Path, exported: Path, morph_dir: Path) -> None:  # noqa: F811
    photos = sorted((morph_dir / "images").glob("*.JPG"))[50:53]
    by_onnx = predict_images(load_estimator(exported), photos, progress=False).table
    by_torch = predict_images(load_estimator(trained_run, device="cpu"), photos, progress=False).table
    np.testing.assert_allclose(by_onnx["mean"], by_torch["mean"], atol=1e-3)
    np.testing.assert_allclose(by_onnx[["box_x1", "box_y2"]], by_torch[["box_x1", "box_y2"]])


def test_l2_model_exports_mean_and_zero_std(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    model, _ = build_model("test_resnet", "l2", target_mean=44.0, target_std=9.0)
    info = ModelInfo("l2", "test_resnet", "l2", 56, 64, (0,), None)
    ensemble = FoldEnsemble([model.eval()])
    x = check_faces(load_estimator(trained_run, device="cpu").info, limit=4)
    write_onnx(ensemble, info, x[:2], tmp_path / "l2.onnx", 18)
    assert [o.name for o in onnx.load(tmp_path / "l2.onnx").graph.output] == ["mean", "std"]
    assert parity(ensemble, info, x, tmp_path / "l2.onnx", "cpu") < 1e-3
    ages = TorchEstimator(ensemble, info, "cpu").estimate(x)
    assert ages.probs is None and (ages.std == 0).all() and np.ptp(ages.mean) > 0


def test_export_refusals(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(FaceageError, match=r"\*\.onnx"):
        export_onnx(trained_run, tmp_path / "model.bin")
    with pytest.raises(FaceageError, match="--faces"):
        export_onnx(trained_run, tmp_path / "m.onnx", faces=tmp_path)
    assert not (tmp_path / "m.onnx").exists()
    (tmp_path / "fake.onnx").write_bytes(b"not onnx")
    with pytest.raises(FaceageError, match=r"fake\.onnx"):
        load_estimator(tmp_path / "fake.onnx")


def test_an_undecodable_face_names_the_file_and_the_faces_option(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"not a JPEG")
    info = ModelInfo("test", "test_resnet", "mv", 56, 64, (0,), None)
    with pytest.raises(FaceageError, match=r"broken\.jpg.*pass --faces DIR"):
        check_faces(info, faces=tmp_path)


def test_large_weights_go_beside_the_graph(trained_run: Path, tmp_path: Path,  # noqa: F811
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "EXTERNAL_DATA_BYTES", 0)  # as if the folds weighed gigabytes
    target = tmp_path / "out" / "big.onnx"
    export_onnx(trained_run, target, fold=0)
    assert _beside(target) == ["big.onnx", "big.onnx.data"]
    assert target.stat().st_size < (target.parent / "big.onnx.data").stat().st_size
    x = check_faces(load_estimator(trained_run, fold=0, device="cpu").info, limit=3)
    want = load_estimator(trained_run, fold=0, device="cpu").estimate(x).mean
    np.testing.assert_allclose(load_estimator(target).estimate(x).mean, want, atol=1e-3)
    # a failed parity check writes nothing and leaves no staging folder
    monkeypatch.setattr(export, "PARITY_TOLERANCE", 0.0)
    with pytest.raises(FaceageError, match="nothing was written"):
        export_onnx(trained_run, tmp_path / "out" / "refused.onnx", fold=0)
    assert _beside(target) == ["big.onnx", "big.onnx.data"]


def test_the_test_time_flip_survives_export(trained_run: Path, tmp_path: Path) -> None:  # noqa: F811
    """A flipped ensemble averages each face with its mirror inside the graph; ONNX reproduces it."""
    torch.manual_seed(0)
    model, _ = build_model("test_resnet", "mv")
    torch.nn.init.normal_(model.head.weight, std=1.0)  # a sharp distribution, so the mirror's differs
    info = ModelInfo("flip", "test_resnet", "mv", 56, 64, (0,), None, flip=True)
    ensemble = FoldEnsemble([model.eval()], flip=True)
    x = check_faces(load_estimator(trained_run, device="cpu").info, limit=4)
    write_onnx(ensemble, info, x[:2], tmp_path / "flip.onnx", 18)
    assert parity(ensemble, info, x, tmp_path / "flip.onnx", "cpu") < PARITY_TOLERANCE
    with torch.no_grad():
        plain = FoldEnsemble([model.eval()])(torch.from_numpy(x))[0]
        mirrored = FoldEnsemble([model.eval()])(torch.from_numpy(x).flip(3))[0]
    flipped = load_estimator(tmp_path / "flip.onnx", device="cpu")  # the file, loaded as predict loads it
    assert flipped.info.flip
    got = flipped.estimate(x).probs
    assert got is not None and np.abs(got - ((plain + mirrored) / 2).numpy()).max() < PARITY_TOLERANCE
    assert np.abs(plain - mirrored).max() > 1e-3  # the mirror really is another input


@pytest.mark.filterwarnings("ignore:Specified provider 'CUDAExecutionProvider'")
def test_the_cuda_difference_never_comes_from_a_cpu_fallback(trained_run: Path, tmp_path: Path,  # noqa: F811
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """onnxruntime lists its CUDA provider but falls back to the CPU (its CUDA libraries did not load):
    the export still passes on the CPU, reports no CUDA figure and says why; the estimator names the
    provider it runs on."""
    import faceage.align.detect.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    result = export_onnx(trained_run, tmp_path / "m.onnx", fold=0)
    assert result.cuda_max_abs_diff is None and result.max_abs_diff < PARITY_TOLERANCE
    assert "CUDA provider did not start" in caplog.text and "difference is not reported" in caplog.text
    estimator = load_estimator(tmp_path / "m.onnx", device="auto")
    assert isinstance(estimator, OnnxEstimator) and estimator.provider == "CPUExecutionProvider"
    with pytest.raises(FaceageError, match="CUDA provider did not start"):
        load_estimator(tmp_path / "m.onnx", device="cuda")


def _beside(target: Path) -> list[str]:
    """The files in `target`'s folder but exports' lock files: no staging folder or temporary left."""
    return sorted(p.name for p in target.parent.iterdir()
                  if not p.name.endswith(".faceage.lock"))
