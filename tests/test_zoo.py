"""The bundled model: shipped in the package, checked by its sha256, offline, and what `faceage predict` and
`faceage.estimate_ages` use when no model is named; on real photos it finds the face and a plausible age."""

from __future__ import annotations

import importlib.util
import shutil
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import faceage
from faceage.cli import app
from faceage.core.errors import FaceageError
from faceage.model.calibration import FACTOR_EDGES
from faceage.predict.estimator import load_estimator
from faceage.zoo import BUNDLED_NAME, ZOO_DIR, bundled_model

REPO = Path(__file__).resolve().parents[1]


def _held_out(labels_dir: Path, source: str, count: int) -> list[tuple[Path, float]]:
    """`count` images of `source` the bundled model never saw (its held-out split, as prepare.py draws it)."""
    spec = importlib.util.spec_from_file_location("prepare", REPO / "pipelines" / "bundled" / "prepare.py")
    assert spec is not None and spec.loader is not None
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    _, images, label_file = prepare.SOURCES[source]
    offset = list(prepare.SOURCES).index(source)
    rows = prepare.source_labels(source, pd.read_csv(labels_dir / label_file, dtype={"subject_id": str}))
    rows = rows[prepare.assign_splits(rows, prepare.SEED + 10 * offset) == "test"]
    rows = rows.iloc[np.linspace(0, len(rows) - 1, count).round().astype(int)]  # spread over the names
    return [(labels_dir / images / p.split("/", 1)[1], float(a)) for p, a in zip(rows["path"], rows["age"],
                                                                                 strict=True)]


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any network connection fails the test: the bundled model must need none."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bundled model tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_the_shipped_file_passes_its_checksum_and_is_small() -> None:
    path = bundled_model()
    assert path == ZOO_DIR / BUNDLED_NAME and path.stat().st_size <= 16 * 2**20
    info = load_estimator(None, device="cpu").info
    assert info.backbone == "tf_efficientnet_lite0" and info.loss == "mv"
    assert info.folds == (0, 1) and not info.flip  # two networks, each face seen once by each (its card)
    assert info.alignment is not None  # the detector and crop its training faces were made with
    assert (info.alignment.detector, info.alignment.size) == ("retinaface", 256)
    assert info.std_bands is not None and info.std_bands.edges == FACTOR_EDGES  # its std's factors by age


def test_a_damaged_or_missing_copy_is_refused_with_the_fix(tmp_path: Path) -> None:
    for name in (BUNDLED_NAME, BUNDLED_NAME + ".sha256"):
        shutil.copy(ZOO_DIR / name, tmp_path / name)
    assert bundled_model(tmp_path) == tmp_path / BUNDLED_NAME
    data = bytearray((tmp_path / BUNDLED_NAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / BUNDLED_NAME).write_bytes(bytes(data))
    with pytest.raises(FaceageError, match=r"damaged .*reinstall"):
        bundled_model(tmp_path)
    (tmp_path / BUNDLED_NAME).unlink()
    with pytest.raises(FaceageError, match=r"missing .*--model"):
        bundled_model(tmp_path)


def test_predict_with_no_model_on_unseen_real_photos(morph_dir: Path, tmp_path: Path) -> None:
    photos = _held_out(morph_dir, "morph", 8)
    result = CliRunner().invoke(app, ["predict", *(str(p) for p, _ in photos), "--out",
                                      str(tmp_path / "p.csv"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "p.csv")
    assert (table["status"] == "ok").all() and len(table) == len(photos)  # one face per mugshot
    errors = np.abs(table["pred"].to_numpy() - np.array([a for _, a in photos]))
    assert errors.mean() < 8 and (table["std"] > 1).all()  # a real age, with a real uncertainty


def test_tight_chips_and_crops_get_a_prediction(utkface_dir: Path, chalearn_dir: Path) -> None:
    for path, age in _held_out(utkface_dir, "utkface", 3) + _held_out(chalearn_dir, "chalearn", 3):
        faces = faceage.estimate_ages(path, device="cpu")
        assert faces, f"{path}: no face"
        assert abs(faces[0].age - age) < 25 and faces[0].std > 0


def test_estimate_ages_takes_a_path_a_pil_image_or_an_array(morph_dir: Path) -> None:
    path, _ = _held_out(morph_dir, "morph", 1)[0]
    by_path = faceage.estimate_ages(path, device="cpu")
    with Image.open(path) as image:
        by_pil = faceage.estimate_ages(image, device="cpu")
        pixels = np.asarray(image.convert("RGB"))
    by_array = faceage.estimate_ages(pixels, device="cpu")
    assert len(by_path) == 1 and by_path == by_pil == by_array
    face = by_path[0]
    assert face.age == round(face.mean) and 0.5 < face.score <= 1 and face.box[2] > face.box[0]
    assert faceage.estimate_ages(np.full((120, 120, 3), 128, np.uint8), device="cpu") == []  # no face
    for bad in (pixels.astype(np.float32), pixels[:, :, :2], "missing.jpg", 3):
        with pytest.raises(FaceageError):
            faceage.estimate_ages(bad, device="cpu")  # type: ignore[arg-type]
