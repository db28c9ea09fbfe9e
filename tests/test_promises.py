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

from faceage.core.errors import FaceageError
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
