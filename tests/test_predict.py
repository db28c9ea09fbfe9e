"""`faceage predict` on real MORPH photos, with a small model trained by the real pipeline (align → manifest →
train).

The run is built once per session (`trained_run`, shared with test_export.py): 40 MORPH photos aligned at
128 px by `align_folder`, an RS manifest with two folds by `build_manifest`, and one epoch of a tiny timm
backbone per fold by `run_training`, so the run folder has exactly the format train writes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from faceage.align.detect import make_detector
from faceage.align.faces import find_faces
from faceage.align.run import align_folder
from faceage.align.settings import AlignSettings
from faceage.cli import app
from faceage.core.errors import FaceageError
from faceage.core.imageio import decode_image, load_rgb
from faceage.core.schema import FACE_PREDICTIONS, read_table
from faceage.manifest.build import build_manifest, write_manifest
from faceage.predict.draw import draw_targets
from faceage.predict.estimator import load_estimator, preprocess
from faceage.predict.info import ModelInfo
from faceage.predict.options import PredictOptions, alignment_for
from faceage.predict.photos import predict_images
from faceage.train.config import resolve_config
from faceage.train.fit import run_training

N_PHOTOS = 40
# Not align's defaults: predict must read them from what align and train recorded.
ALIGNED_WITH = AlignSettings(size=128, min_face=20.0, score_threshold=0.6)
ALIGN_SIZE = ALIGNED_WITH.size


@functools.cache
def _build_run(base: Path, morph_images: Path) -> Path:
    """Align, build a 2-fold RS manifest, train one epoch per fold; returns the run folder."""
    raw, aligned = base / "raw", base / "aligned"
    raw.mkdir(parents=True)
    for photo in sorted(morph_images.glob("*.JPG"))[:N_PHOTOS]:
        (raw / photo.name).symlink_to(photo)  # the data stays in ../shared; only links here
    align_folder(raw, aligned, ALIGNED_WITH, workers=1, progress=False)
    result = build_manifest("morph2", "rs", aligned, folds=2, val_fraction=0.0)
    write_manifest(result, base / "folds.csv")  # a name that says nothing: the manifest records rs
    cfg = resolve_config(None, dict(manifest=str(base / "folds.csv"), images=str(aligned),
                                    backbone="test_resnet", loss="mv", pretrained="none", epochs=1,
                                    batch_size=8, lr=0.05, img_size=56, resize=64, device="cpu",
                                    workers=1, keep_last=True, out=str(base / "run")))
    run_training(cfg)
    return base / "run"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, morph_dir: Path) -> Path:
    return _build_run(tmp_path_factory.getbasetemp() / "predict-run", morph_dir / "images")


@pytest.fixture(scope="module")
def photos(morph_dir: Path) -> list[Path]:
    """Real MORPH photos the model never saw."""
    return sorted((morph_dir / "images").glob("*.JPG"))[N_PHOTOS:N_PHOTOS + 6]


@pytest.fixture(scope="module")
def two_faces(tmp_path_factory: pytest.TempPathFactory, photos: list[Path]) -> Path:
    """Two real photos side by side in one image."""
    left, right = (np.asarray(Image.open(p).convert("RGB").resize((200, 240))) for p in photos[:2])
    path = tmp_path_factory.mktemp("two") / "pair.png"
    Image.fromarray(np.hstack([left, right])).save(path)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_rs_manifest_under_any_name_trains_as_rs(trained_run: Path) -> None:
    config = yaml.safe_load((trained_run / "config.yaml").read_text())
    assert (config["protocol"], config["dataset"]) == ("rs", "morph2")
    assert trained_run.parent.joinpath("folds.csv").read_text().splitlines()[1].endswith(",morph2,rs")


def test_same_model_and_preprocessing_as_training(trained_run: Path) -> None:
    """Fold 0 rebuilt from its checkpoint, fed training's cache decode of its test faces, reproduces the
    distributions and means train wrote for that fold."""
    written = pd.read_csv(trained_run / "fold0" / "predictions.csv")
    dists = np.load(trained_run / "fold0" / "distributions.npz")
    estimator = load_estimator(trained_run, fold=0, device="cpu")
    aligned = Path(str(estimator.info.aligned))
    crops = [decode_image(aligned / p, estimator.info.resize) for p in written["path"]]
    ages = estimator.estimate(preprocess(crops, estimator.info))
    assert ages.probs is not None
    assert list(dists["path"]) == list(written["path"])
    np.testing.assert_allclose(ages.probs, dists["probs"].astype(np.float64), atol=2e-3)  # stored as float16
    np.testing.assert_allclose(ages.mean, written["mean"], atol=1e-3)
    np.testing.assert_allclose(ages.std, written["std"], atol=1e-3)
    np.testing.assert_array_equal(ages.pred, written["pred"])
    # a 128-px crop resized to 64: the same pixels either way
    full = [np.asarray(Image.open(aligned / p).convert("RGB")) for p in written["path"]]
    assert full[0].shape == (ALIGN_SIZE, ALIGN_SIZE, 3)
    np.testing.assert_allclose(preprocess(full, estimator.info), preprocess(crops, estimator.info), atol=1e-6)


@pytest.mark.parametrize(("backbone", "expected"), [
    ("tf_efficientnet_lite0", [-1.0, 0.00392157, 1.0]),  # mean = std = 0.5, as its pretrained weights
    ("resnet18", [-2.117904, 0.205182, 2.64]),  # ImageNet's mean and std
])
def test_preprocess_normalises_as_the_backbone_expects(backbone: str, expected: list[float]) -> None:
    crop = np.zeros((128, 128, 3), dtype=np.uint8)
    crop[..., 1], crop[..., 2] = 128, 255  # the pixel (0, 128, 255), unchanged by the resize
    x = preprocess([crop], ModelInfo("test", backbone, "mv", 56, 64, (0,), None))
    assert x.shape == (1, 3, 56, 56)
    np.testing.assert_allclose(x[0, :, 20, 30], expected, atol=1e-5)


def test_alignment_follows_the_run_as_recorded_without_opening_a_crop(
        trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = load_estimator(trained_run, device="cpu").info
    assert info.alignment == ALIGNED_WITH  # carried by the checkpoints (align.json, copied by train)
    monkeypatch.setattr("faceage.predict.options.Image.open", _never_opened)
    assert alignment_for(info, PredictOptions()) == ALIGNED_WITH
    from_folder = alignment_for(dataclasses.replace(info, alignment=None), PredictOptions())  # align.json
    assert from_folder == ALIGNED_WITH
    given = alignment_for(info, PredictOptions(size=256, min_face=10, score_threshold=0.3))
    assert (given.size, given.min_face, given.score_threshold) == (256, 10, 0.3)
    elsewhere = alignment_for(dataclasses.replace(info, aligned="/nonexistent", alignment=None),
                              PredictOptions())
    assert elsewhere == AlignSettings()
    monkeypatch.undo()
    old = tmp_path / "old-aligned"  # a folder aligned before align.json existed: faces.csv and the crops
    shutil.copytree(Path(str(info.aligned)), old)
    (old / "align.json").unlink()
    legacy = alignment_for(dataclasses.replace(info, aligned=str(old), alignment=None), PredictOptions())
    assert (legacy.size, legacy.min_face, legacy.score_threshold) == (ALIGN_SIZE, 32, 0.5)


def _never_opened(*args: object, **kwargs: object) -> None:
    raise AssertionError("predict opened an aligned crop to learn its size")


def test_fold_average_is_the_mean_of_the_folds(trained_run: Path) -> None:
    both = load_estimator(trained_run, device="cpu")
    folds = [load_estimator(trained_run, fold=k, device="cpu") for k in (0, 1)]
    assert both.info.folds == (0, 1) and [f.info.folds for f in folds] == [(0,), (1,)]
    aligned = Path(str(both.info.aligned))
    x = preprocess([decode_image(f, 64) for f in sorted(aligned.glob("*.jpg"))[:8]], both.info)
    avg, (p0, p1) = both.estimate(x), (f.estimate(x) for f in folds)
    assert avg.probs is not None and p0.probs is not None and p1.probs is not None
    assert np.abs(p0.probs - p1.probs).max() > 1e-3  # the folds really differ
    np.testing.assert_allclose(avg.probs, (p0.probs + p1.probs) / 2, atol=1e-6)
    ages = np.arange(101)
    mean = avg.probs @ ages
    std = np.sqrt((avg.probs * (ages[None, :] - mean[:, None]) ** 2).sum(axis=1))
    np.testing.assert_allclose(avg.mean, mean, atol=1e-4)
    np.testing.assert_allclose(avg.std, std, atol=1e-4)
    np.testing.assert_array_equal(avg.pred, np.floor(mean + 0.5))


def test_checkpoint_files_load_alone(trained_run: Path) -> None:
    """best.pt and last.pt carry their settings."""
    x = preprocess([decode_image(f, 64) for f in sorted((trained_run.parent / "aligned").glob("*.jpg"))[:4]],
                   load_estimator(trained_run, fold=1, device="cpu").info)
    fold1 = load_estimator(trained_run, fold=1, device="cpu").estimate(x)
    for name in ("best.pt", "last.pt"):
        alone = load_estimator(trained_run / "fold1" / name, device="cpu")
        assert alone.info.folds == (1,) and alone.info.img_size == 56 and alone.info.resize == 64
        np.testing.assert_allclose(alone.estimate(x).mean, fold1.mean, atol=1e-5)  # one epoch: best = last


def test_an_edited_config_yaml_never_changes_the_preprocessing(trained_run: Path, tmp_path: Path) -> None:
    """Each checkpoint carries the settings it was trained with: those rebuild the model, not config.yaml."""

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "img_size": 40, "resize": 48}))
    info = load_estimator(run, device="cpu").info
    assert (info.img_size, info.resize) == (56, 64)
    assert load_estimator(run / "fold0" / "last.pt", device="cpu").info.resize == 64  # last.pt carries them


def test_every_face_of_real_photos(trained_run: Path, photos: list[Path], two_faces: Path,
                                   tmp_path: Path) -> None:
    estimator = load_estimator(trained_run, device="cpu")
    before = {p: _digest(p) for p in [*photos, two_faces]}
    result = predict_images(estimator, [*photos, two_faces], PredictOptions(batch_size=4),
                            draw_dir=tmp_path / "drawn", progress=False)
    table = result.table
    assert result.images == result.read == len(photos) + 1
    assert (table["status"] == "ok").all()
    per_image = table.groupby("path")["face"].apply(list)
    assert all(per_image[str(p)] == [0] for p in photos)
    pair = table[table["path"] == str(two_faces)].sort_values("box_x1")
    assert list(pair["face"].sort_values()) == [0, 1]
    assert pair["box_x2"].iloc[0] < 200 < pair["box_x1"].iloc[1]  # one face in each half
    assert (table["score"] > 0.5).all() and (table["box_x2"] > table["box_x1"]).all()
    np.testing.assert_array_equal(table["pred"], np.floor(table["mean"] + 0.5))
    assert ((table["mean"] > 0) & (table["mean"] < 100) & (table["std"] > 0)).all()
    assert table["mean"].std() > 0.01  # a trained model: faces get different ages
    # the same photo's face aligned by the align stage (saved as JPEG) gets nearly the same age
    aligned = Path(str(estimator.info.aligned))
    same = [p for p in sorted((trained_run.parent / "raw").iterdir())][:3]
    again = predict_images(estimator, same, progress=False).table
    reference = estimator.estimate(preprocess([decode_image(aligned / f"{p.stem}.jpg", 64) for p in same],
                                              estimator.info))
    np.testing.assert_allclose(again["mean"], reference.mean, atol=0.5)
    # drawn copies: one per image, same size, different pixels; the inputs are untouched
    assert len(result.drawn) == len(photos) + 1
    for source in [*photos, two_faces]:
        drawn = tmp_path / "drawn" / f"{source.stem}.jpg"
        assert drawn in result.drawn
        with Image.open(source) as a, Image.open(drawn) as b:
            assert a.size == b.size
            diff = np.abs(np.asarray(a.convert("RGB"), np.int16) - np.asarray(b.convert("RGB"), np.int16))
        assert (diff > 60).mean() > 0.005  # the box and label
    assert before == {p: _digest(p) for p in before}


def test_each_face_is_the_align_crop_resized_as_training_did(trained_run: Path, photos: list[Path]) -> None:
    """predict reads align's 256-px crop of each face, resized by preprocessing as training's cache was
    (a warp straight to the model's side read the bundled model's 80+ faces a year younger): the same ages
    as the model given those crops."""
    estimator = load_estimator(trained_run, device="cpu")
    settings = alignment_for(estimator.info, PredictOptions())
    detector = make_detector(settings.detector, settings.model, 1, "cpu", settings.score_threshold)
    crops = [find_faces(detector, load_rgb(photo), settings).faces[0].crop for photo in photos]
    assert all(crop is not None and crop.shape == (ALIGN_SIZE, ALIGN_SIZE, 3) for crop in crops)
    reference = estimator.estimate(preprocess(crops, estimator.info))
    table = predict_images(estimator, photos, progress=False).table
    assert list(table["path"]) == [str(photo) for photo in photos]
    np.testing.assert_allclose(table["mean"], reference.mean, atol=1e-4)
    np.testing.assert_allclose(table["std"], reference.std, atol=1e-4)


def test_failures_are_listed_and_the_run_finishes(trained_run: Path, bad_inputs_dir: Path) -> None:
    files = ["zero_bytes.jpg", "text_file.jpg", "garbage.png", "no_face.jpg", "bomb.png", "ok_plain.jpg"]
    result = predict_images(load_estimator(trained_run, device="cpu"), [bad_inputs_dir / f for f in files],
                            progress=False)
    table = result.table.set_index("path")
    status = {f: table.loc[str(bad_inputs_dir / f), "status"] for f in files}
    assert status == {"zero_bytes.jpg": "unreadable", "text_file.jpg": "unreadable",
                      "garbage.png": "unreadable", "no_face.jpg": "no_face", "bomb.png": "too_large",
                      "ok_plain.jpg": "ok"}
    for f in files[:5]:
        row = table.loc[str(bad_inputs_dir / f)]
        assert pd.isna(row["face"]) and pd.isna(row["pred"]) and row["error"]
    assert "0 bytes" in table.loc[str(bad_inputs_dir / "zero_bytes.jpg"), "error"]
    assert str(bad_inputs_dir / "text_file.jpg") in table.loc[str(bad_inputs_dir / "text_file.jpg"), "error"]
    assert result.read == 2  # no_face.jpg and ok_plain.jpg were read


def test_detection_on_several_cores_gives_the_one_core_table_in_the_same_order(
        trained_run: Path, photos: list[Path], bad_inputs_dir: Path) -> None:
    estimator = load_estimator(trained_run, device="cpu")
    inputs = [bad_inputs_dir / "garbage.png", *photos[::-1], bad_inputs_dir / "no_face.jpg"]
    one, four = (predict_images(estimator, inputs, PredictOptions(threads=n, batch_size=3), progress=False)
                 for n in (1, 4))
    assert list(one.table["path"]) == [str(p) for p in inputs]  # in the order given, failures included
    pd.testing.assert_frame_equal(one.table, four.table)


def test_tiny_faces_are_listed_not_predicted(trained_run: Path, photos: list[Path]) -> None:
    result = predict_images(load_estimator(trained_run, device="cpu"), photos[:1],
                            PredictOptions(min_face=10_000), progress=False)
    row = result.table.iloc[0]
    assert row["status"] == "too_small" and row["face"] == 0 and pd.isna(row["pred"]) and row["score"] > 0.5


def test_model_errors(trained_run: Path, tmp_path: Path) -> None:
    with pytest.raises(FaceageError, match=r"trained folds \[0, 1\]"):
        load_estimator(trained_run, fold=3)
    with pytest.raises(FaceageError, match="not a run folder"):
        load_estimator(tmp_path)
    with pytest.raises(FaceageError, match="no such file"):
        load_estimator(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FaceageError, match=r"junk\.pt"):
        load_estimator(tmp_path / "junk.pt")
    with pytest.raises(FaceageError, match="--fold"):
        load_estimator(tmp_path / "model.onnx", fold=0)


def test_cli_end_to_end(trained_run: Path, photos: list[Path], bad_inputs_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    inputs = [str(p) for p in photos[:2]] + [str(bad_inputs_dir / "zero_bytes.jpg")]
    for out in ("faces.csv", "faces.json"):
        result = runner.invoke(app, ["predict", *inputs, "--model", str(trained_run), "--out",
                                     str(tmp_path / out), "--draw", str(tmp_path / "drawn"),
                                     "--device", "cpu"])
        assert result.exit_code == 0, result.output
    table = read_table(tmp_path / "faces.csv", FACE_PREDICTIONS)
    assert list(table["status"]) == ["ok", "ok", "unreadable"]
    records = json.loads((tmp_path / "faces.json").read_text())
    assert [r["status"] for r in records] == ["ok", "ok", "unreadable"] and records[2]["pred"] is None
    np.testing.assert_allclose([r["mean"] for r in records[:2]], table["mean"][:2])
    drawn = sorted(p.name for p in (tmp_path / "drawn").glob("*.jpg"))
    assert drawn == sorted(f"{p.stem}.jpg" for p in photos[:2])
    # nothing readable at all: the table is still written, the exit code says so
    nothing = runner.invoke(app, ["predict", "--model", str(trained_run),
                                  str(bad_inputs_dir / "zero_bytes.jpg"), "--out", str(tmp_path / "none.csv"),
                                  "--device", "cpu"])
    assert nothing.exit_code == 1 and (tmp_path / "none.csv").is_file()
    bad_out = runner.invoke(app, ["predict", "--model", str(trained_run), inputs[0], "--out",
                                  str(tmp_path / "x.txt")])
    assert isinstance(bad_out.exception, FaceageError) and ".csv or .json" in str(bad_out.exception)


def test_a_full_disk_while_drawing_keeps_every_prediction(
    trained_run: Path, photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing stops at the first failed copy, the predictions go on and --out gets them all; the message
    says how many copies exist (and claims none that does not)."""
    import faceage.predict.photos as photos_module
    from faceage.core.atomic import output_error

    real, calls = photos_module.save_drawn, [0]

    def fill_up(image: np.ndarray, marks: list, target: Path) -> None:
        calls[0] += 1
        if calls[0] > 1:
            raise output_error(target, OSError(28, "No space left on device"))
        real(image, marks, target)

    monkeypatch.setattr(photos_module, "save_drawn", fill_up)
    args = ["predict", "--model", str(trained_run), *map(str, photos[:3]), "--out", str(tmp_path / "p.csv"),
            "--draw", str(tmp_path / "drawn"), "--device", "cpu"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, FaceageError), result.output
    message = str(result.exception)
    assert "drawing stopped after 1 images" in message and "No space left" in message
    assert list(read_table(tmp_path / "p.csv", FACE_PREDICTIONS)["status"]) == ["ok", "ok", "ok"]
    assert len(list((tmp_path / "drawn").glob("*.jpg"))) == 1


def test_draw_never_overwrites_an_input(trained_run: Path, tmp_path: Path, photos: list[Path]) -> None:
    inside = tmp_path / "imgs"
    inside.mkdir()
    (inside / "a.jpg").write_bytes(photos[0].read_bytes())
    with pytest.raises(FaceageError, match="overwrite the input"):
        predict_images(load_estimator(trained_run, device="cpu"), [inside], draw_dir=inside, progress=False)
    assert (inside / "a.jpg").read_bytes() == photos[0].read_bytes()


def test_drawn_names_met_twice_get_numbered_case_blind() -> None:
    """The same name under three inputs (two differing only in case) → x.jpg, X~2.jpg, x~3.jpg; a .png next
    to the .jpg of the same stem keeps its suffix (align's rule)."""
    images = {Path("/in/a/x.jpg"): "x.jpg", Path("/in/b/X.jpg"): "X.jpg", Path("/in/c/x.jpg"): "x.jpg",
              Path("/in/a/x.png"): "x.png"}
    targets = draw_targets(images, Path("/drawn"))
    assert {str(k): v.name for k, v in targets.items()} == {
        "/in/a/x.jpg": "x.jpg", "/in/b/X.jpg": "X~2.jpg", "/in/c/x.jpg": "x~3.jpg",
        "/in/a/x.png": "x.png.jpg"}


def test_the_console_table_stays_readable_in_80_columns() -> None:
    from rich.console import Console

    from faceage.predict.summary import predictions_table

    rows = [{"path": f"/data/some/long/folder/of/photos/person_{i:03d}_taken_in_2019.jpg", "face": 0,
             "status": "ok", "score": 0.99, "box_x1": 10.0, "box_y1": 20.0, "box_x2": 300.0, "box_y2": 400.0,
             "pred": 41.0, "mean": 41.2, "std": 5.3, "error": ""} for i in range(3)]
    table = pd.DataFrame(rows, columns=list(rows[0]))
    console = Console(width=80, record=True)
    console.print(predictions_table(table, width=80))
    text = console.export_text()
    assert "3 rows in /data/some/long/folder/of/photos" in text
    body = [line for line in text.splitlines() if "person_" in line]
    assert len(body) == 3 and all("41.2 ± 5.3" in line for line in body)  # one line per face
    assert max(len(line) for line in text.splitlines()) <= 80 and "10,20,300,400" not in text
    wide = Console(width=120, record=True)
    wide.print(predictions_table(table, width=120))
    assert "10,20,300,400" in wide.export_text()  # the box where there is room


def _counting_find_faces(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record the photos predict detects faces in (the ones it does not reuse)."""
    import faceage.predict.photos as photos_module

    seen: list[Path] = []
    real = photos_module._find_faces

    def counting(detector: Any, path: Path, *rest: Any, **options: Any) -> Any:
        seen.append(path)
        return real(detector, path, *rest, **options)

    monkeypatch.setattr(photos_module, "_find_faces", counting)
    return seen


def test_a_rerun_into_the_same_out_predicts_only_the_new_photos(
        photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundled = load_estimator(None, device="cpu")
    out = tmp_path / "ages.csv"
    first = predict_images(bundled, photos[:3], progress=False, out=out)
    assert (first.rows, first.reused) == (3, 0) and read_table(out, FACE_PREDICTIONS)["model"].nunique() == 1
    before = pd.read_csv(out)
    seen = _counting_find_faces(monkeypatch)
    again = predict_images(bundled, photos[:4], progress=False, out=out)
    assert seen == [photos[3]] and again.reused == 3
    after = pd.read_csv(out)
    assert list(after["path"]) == [str(p) for p in photos[:4]]
    pd.testing.assert_frame_equal(after.head(3), before)  # the kept rows are the earlier ones, unchanged
    seen.clear()
    other = predict_images(bundled, photos[:4], PredictOptions(min_face=40), progress=False, out=out)
    assert len(seen) == 4 and other.reused == 0  # other settings: nothing reused
    assert not any(p.name.endswith(".partial.csv") for p in tmp_path.iterdir())


def test_a_killed_run_resumes_from_the_rows_it_flushed(
        photos: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import faceage.predict.photos as photos_module

    bundled = load_estimator(None, device="cpu")
    out = tmp_path / "ages.json"
    real, calls = photos_module._estimate, [0]

    def dies_on_the_third_batch(estimator: Any, group: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt  # kill -9 loses no more than this: the staging file is flushed
        real(estimator, group)

    monkeypatch.setattr(photos_module, "_estimate", dies_on_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        predict_images(bundled, photos[:5], PredictOptions(batch_size=1), progress=False, out=out)
    assert not out.exists() and (tmp_path / ".ages.json.partial.csv").is_file()
    monkeypatch.undo()
    seen = _counting_find_faces(monkeypatch)
    resumed = predict_images(bundled, photos[:5], PredictOptions(batch_size=1), progress=False, out=out)
    assert resumed.reused == 2 and seen == photos[2:5]
    records = json.loads(out.read_text())
    assert [r["path"] for r in records] == [str(p) for p in photos[:5]] and records[0]["face"] == 0
    assert not (tmp_path / ".ages.json.partial.csv").exists()
    seen.clear()
    assert predict_images(bundled, photos[:5], progress=False, out=out).reused == 5 and not seen  # from JSON


def test_shards_split_the_photos_between_them(photos: list[Path], tmp_path: Path) -> None:
    bundled = load_estimator(None, device="cpu")
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in photos:
        (folder / photo.name).symlink_to(photo)
    parts = []
    for i in range(3):
        predict_images(bundled, [folder], progress=False, shard=(i, 3), out=tmp_path / f"s{i}.csv")
        parts.append(set(pd.read_csv(tmp_path / f"s{i}.csv")["path"]))
    assert set().union(*parts) == {str(tmp_path / "photos" / p.name) for p in photos}
    assert sum(len(part) for part in parts) == len(photos)  # each photo in exactly one share
