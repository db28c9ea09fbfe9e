"""Promises that must hold whatever a user hands in (issue 20's classes, those kept so far): values checked
where they enter, one bad image costing only itself, links that loop, outputs escaped for their format,
and a run that diverges saying so."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_main
from PIL import Image
from test_study import _study_args, faces  # noqa: F401 - the study's chips (once a session)
from test_train import Data, _train, tiny_data  # noqa: F401 - the tiny SE training set (once a session)

from faceage.align.run import align_folder
from faceage.core.atomic import remove_temporaries_of
from faceage.core.errors import FaceageError
from faceage.core.layout import IMAGE_CACHE
from faceage.core.lock import BusyError, folder_lock
from faceage.evaluate.run import evaluate
from faceage.predict.estimator import load_estimator
from faceage.predict.options import PredictOptions, alignment_for
from faceage.predict.photos import predict_images
from faceage.train.config import MAX_SEED, resolve_config


@pytest.fixture(scope="module")
def bundled():  # type: ignore[no-untyped-def]
    return load_estimator(None, device="cpu")


# values are checked where they enter

@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**64])
def test_a_seed_past_what_the_generators_take_is_refused(seed: int) -> None:
    with pytest.raises(FaceageError, match=rf"seed must lie in 0\.\.{MAX_SEED}"):
        resolve_config(None, {"seed": seed})
    assert resolve_config(None, {"seed": MAX_SEED}).seed == MAX_SEED


def test_a_crop_size_of_zero_is_refused_not_read_as_the_default(bundled) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(FaceageError, match=r"--size 0"):
        alignment_for(bundled.info, PredictOptions(size=0))


# one bad image costs only itself

def test_an_image_too_wide_to_draw_costs_only_its_own_copy(bundled, morph_dir: Path,  # type: ignore[no-untyped-def]
                                                             tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 70_000, 3), 128, np.uint8)).save(tmp_path / "wide.png")
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    result = predict_images(bundled, [tmp_path / "wide.png", photo], draw_dir=tmp_path / "drawn",
                            progress=False, out=tmp_path / "ages.csv")
    assert result.draw_error is None and [p.name for p in result.drawn] == [photo.with_suffix(".jpg").name]
    assert list(pd.read_csv(tmp_path / "ages.csv")["status"]) == ["no_face", "ok"]  # the table is written


# links that loop

def test_a_link_to_itself_is_an_unreadable_row_and_an_out_link_is_replaced(
        bundled, morph_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "self.jpg").symlink_to(tmp_path / "self.jpg")
    (tmp_path / "ages.csv").symlink_to(tmp_path / "ages.csv")
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    result = predict_images(bundled, [tmp_path / "self.jpg", photo], draw_dir=tmp_path / "drawn",
                            progress=False, out=tmp_path / "ages.csv")
    table = pd.read_csv(tmp_path / "ages.csv")
    assert list(table["status"]) == ["unreadable", "ok"] and "symbolic links" in table["error"].iloc[0]
    assert result.read == 1 and not (tmp_path / "ages.csv").is_symlink()


# outputs escaped for their format

def test_cs_csv_cells_never_run_as_formulas_and_a_newline_keeps_its_markdown_row(tmp_path: Path) -> None:
    rows = pd.DataFrame({"path": ["a.jpg", "b.jpg"], "age": [30.0, 40.0], "pred": [31.0, 38.0]})
    formula, broken = tmp_path / "=HYPERLINK(evil).csv", tmp_path / "two\nlines" / "predictions.csv"
    broken.parent.mkdir()
    for path in (formula, broken):
        rows.to_csv(path, index=False)
    evaluate([formula, broken], curve=tmp_path / "cs.png", report=tmp_path / "report.md")
    header = (tmp_path / "cs.csv").read_text().splitlines()[0].split(",")
    assert header[1] == "'=HYPERLINK(evil)" and header[2].startswith('"two')
    report = (tmp_path / "report.md").read_text()
    assert "| two lines | 2 | 1.50 |" in report and "\n## two lines\n" in report  # one line each


# a run that diverges says so

def test_a_diverging_run_names_the_epoch_and_the_fix(tiny_data: Data, tmp_path: Path,  # noqa: F811
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("faceage.train.job.TrainingJob.mae", lambda *args: math.nan)
    with pytest.raises(FaceageError, match=r"fold 0, epoch 1/2: the validation MAE is nan.*lower --lr"):
        _train(tiny_data, tmp_path / "run", fold=0)


# a study counts only the runs it planned

def test_a_run_trained_by_hand_into_a_study_folder_is_refused_not_counted(
        faces: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    args = _study_args(faces, out)
    flags = dict(zip(args[1::2], args[2::2], strict=False))  # the run's train flags, as the study gives them
    by_hand = resolve_config(None, {"images": faces[0], "manifest": faces[1], "loss": "mv", "seed": 0,
                                    "out": out / "mv-s0", "lr": 0.5, "backbone": flags["--backbone"],
                                    "pretrained": "none", "protocol": "se"})
    (out / "mv-s0").mkdir(parents=True)
    (out / "mv-s0" / "config.yaml").write_text(by_hand.to_yaml())
    code, text = run_main(args, monkeypatch, capsys)
    assert code == 2 and "trained with other settings than the study plans" in text and "lr: 0.5" in text


# one writer per folder, across commands

def test_predict_draw_and_align_never_share_a_folder(bundled, morph_dir: Path,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    with folder_lock(tmp_path / "shared", "the align output"), pytest.raises(BusyError, match="in use"):
        predict_images(bundled, [photo], draw_dir=tmp_path / "shared", progress=False)
    assert not any((tmp_path / "shared").glob("*.jpg"))


def test_a_clean_up_never_touches_another_jobs_working_files(morph_dir: Path, tmp_path: Path) -> None:
    """align's clean-up of its killed run's temporaries leaves train's image cache (and its build) alone."""
    raw, dst = tmp_path / "raw", tmp_path / "aligned"
    raw.mkdir()
    (raw / "a.JPG").symlink_to(sorted((morph_dir / "images").glob("*.JPG"))[0])
    building = dst / IMAGE_CACHE / f".{'k' * 32}.u8.abcd1234.tmp.u8"  # a live train's cache being built
    building.parent.mkdir(parents=True)
    building.write_bytes(b"rows")
    left = dst / ".a.jpg.wxyz9876.tmp.jpg"  # align's own, from a killed run
    left.write_bytes(b"half")
    align_folder(raw, dst, workers=1, progress=False)
    assert building.read_bytes() == b"rows" and not left.exists()


def test_a_killed_jobs_leftovers_go_with_the_next_run(tmp_path: Path) -> None:
    from faceage.core.atomic import temporary_affixes
    from faceage.train.cache import open_cache

    images = tmp_path / "faces"
    images.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "a.jpg")
    killed_build = images / IMAGE_CACHE / ".0123456789abcdef0123456789abcdef.u8.abcd1234.tmp.u8"
    killed_build.parent.mkdir()
    killed_build.write_bytes(b"\0" * 1000)  # a full-size temporary a killed build left
    open_cache(images, ["a.jpg"], size=8, workers=1)
    assert not killed_build.exists()
    target = tmp_path / "model.onnx"
    prefix, suffix = temporary_affixes(target)
    staging = tmp_path / f"{prefix}abcd1234{suffix[:4]}"  # a killed export's staging folder
    staging.mkdir()
    (staging / "model.onnx").write_bytes(b"half")
    other = tmp_path / ".other.onnx.abcd1234.tmp"
    other.mkdir()
    assert remove_temporaries_of(target) == 1 and not staging.exists() and other.exists()


# writes never leave their output folder

def test_an_output_folder_linking_outside_is_refused(bundled, morph_dir: Path,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    raw, dst = tmp_path / "raw", tmp_path / "aligned"
    raw.mkdir()
    source = raw / "a.jpg"
    source.write_bytes((sorted((morph_dir / "images").glob("*.JPG"))[0]).read_bytes())
    dst.mkdir()
    (dst / "into_src").symlink_to(raw)  # aligned/into_src/a.jpg would be the source photo itself
    before = source.read_bytes()
    with pytest.raises(FaceageError, match=r"links that lead outside it .*into_src"):
        align_folder(raw, dst, workers=1, progress=False)
    with pytest.raises(FaceageError, match=r"the drawing folder holds links that lead outside it"):
        predict_images(bundled, [source], draw_dir=dst, progress=False)
    assert source.read_bytes() == before
    (dst / "inside").symlink_to(dst / "sub", target_is_directory=True)  # a link that stays inside is fine
    (dst / "into_src").unlink()
    align_folder(raw, dst, workers=1, progress=False)
    assert source.read_bytes() == before and (dst / "a.jpg").is_file()


def test_a_header_of_a_million_columns_is_refused_at_once(tmp_path: Path) -> None:
    table = tmp_path / "predictions.csv"
    table.write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n" + "1," * 999_999 + "1\n")
    with pytest.raises(FaceageError, match=r"predictions\.csv: the header \(first line\) is over 65,536"):
        evaluate([table])


def test_an_error_quoting_a_huge_value_prints_a_few_lines(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    huge = "x" * 10_000_000
    monkeypatch.setattr("faceage.doctor.collect", lambda: (_ for _ in ()).throw(FaceageError(f"{huge}: bad")))
    code, text = run_main(["doctor"], monkeypatch, capsys)
    assert code == 2 and len(text) < 2_200 and "9,998,005 characters left out" in text
    assert text.rstrip().endswith("bad")


def test_a_photo_named_like_a_formula_is_text_in_every_csv_and_keeps_its_name(
        bundled, morph_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    photo = Path("=HYPERLINK(evil).jpg")  # given as a relative path: the table's cell starts with "="
    photo.write_bytes(sorted((morph_dir / "images").glob("*.JPG"))[0].read_bytes())
    out = tmp_path / "ages.csv"
    predict_images(bundled, [photo], progress=False, out=out)
    assert out.read_text().splitlines()[1].startswith("'=HYPERLINK(evil).jpg,")  # a spreadsheet shows it
    assert predict_images(bundled, [photo], progress=False, out=out).reused == 1  # every stage reads the name
    raw, aligned = tmp_path / "raw", tmp_path / "aligned"
    raw.mkdir()
    (raw / "-001A05.jpg").write_bytes(photo.read_bytes())
    align_folder(raw, aligned, workers=1, progress=False)
    assert "\n'-001A05.jpg," in (aligned / "faces.csv").read_text()
    assert align_folder(raw, aligned, workers=1, progress=False).reused == 1


def test_eval_never_writes_into_a_folder_another_command_is_writing(tmp_path: Path) -> None:
    table = tmp_path / "predictions.csv"
    pd.DataFrame({"path": ["a.jpg"], "age": [30.0], "pred": [31.0]}).to_csv(table, index=False)
    busy = tmp_path / "aligned"
    with folder_lock(busy, "the align output"), pytest.raises(BusyError, match="in use"):
        evaluate([table], report=busy / "report.md")
    assert not (busy / "report.md").exists()
    evaluate([table], report=busy / "report.md")  # once align is done
    assert (busy / "report.md").is_file()


@pytest.mark.parametrize("threads", ["0", "-1"])
def test_predict_threads_below_one_are_refused(threads: str, morph_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    code, text = run_main(["predict", str(photo), "--threads", threads], monkeypatch, capsys)
    assert code == 2 and f"--threads {threads}: give at least 1" in text


def test_an_out_name_of_250_bytes_is_written_and_resumed(bundled, morph_dir: Path,  # type: ignore[no-untyped-def]
                                                         tmp_path: Path) -> None:
    photo = sorted((morph_dir / "images").glob("*.JPG"))[0]
    out = tmp_path / ("a" * 246 + ".csv")  # 250 bytes: the staging file and the lock beside it still fit
    predict_images(bundled, [photo], progress=False, out=out)
    assert list(pd.read_csv(out)["status"]) == ["ok"]
    assert predict_images(bundled, [photo], progress=False, out=out).reused == 1
