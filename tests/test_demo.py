"""The main job: `faceage demo` runs every stage on a folder of real MORPH photos and resumes on a rerun."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from faceage.cli import app
from faceage.core.errors import FaceageError
from faceage.demo import DEFAULT_RECIPE, find_data

REPO = Path(__file__).resolve().parents[1]


def test_find_data_prefers_the_flag_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labelled = tmp_path / "morph"
    labelled.mkdir()
    (labelled / "009055_0M54.JPG").write_bytes(b"")
    other = tmp_path / "other"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"")
    monkeypatch.setenv("FACEAGE_DATA", str(other))
    assert find_data(labelled) == (labelled, True)
    assert find_data(None) == (other, False)
    with pytest.raises(FaceageError, match="does not exist"):
        find_data(tmp_path / "absent")


def test_demo_runs_every_stage_and_resumes(morph_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    data = tmp_path / "photos"
    data.mkdir()
    for photo in sorted((morph_dir / "images").iterdir())[:90]:
        (data / photo.name).symlink_to(photo)
    out = tmp_path / "out"
    args = ["demo", "--data", str(data), "--out", str(out), "--recipe", str(REPO / DEFAULT_RECIPE),
            "--epochs", "1", "--device", "cpu", "--workers", "1"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    faces = pd.read_csv(out / "aligned" / "faces.csv")
    assert len(faces) == 90 and (faces["status"] == "ok").mean() >= 0.95
    manifest = pd.read_csv(out / "manifests" / "morph2" / "se.csv")
    predictions = pd.read_csv(out / "run" / "predictions.csv")
    assert set(predictions["path"]) == set(manifest.loc[manifest["fold"] == 0, "path"])
    assert "| run |" in (out / "report.md").read_text() and (out / "cs.png").stat().st_size > 0
    assert len(list((out / "drawn").glob("*.jpg"))) == 8  # and the folder's lock file
    assert len(pd.read_csv(out / "predict.csv")) >= 8

    assert not (out / "run" / "fold0" / "last.pt").exists()  # a finished fold keeps best.pt only
    trained = (out / "run" / "fold0" / "best.pt").stat().st_mtime_ns
    aligned = (out / "aligned" / "faces.csv").read_bytes()
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert (out / "run" / "fold0" / "best.pt").stat().st_mtime_ns == trained  # the finished fold is skipped
    assert (out / "aligned" / "faces.csv").read_bytes() == aligned  # nothing realigned


def test_without_labelled_data_the_demo_aligns_and_predicts_insightface_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import faceage.demo

    monkeypatch.delenv("FACEAGE_DATA", raising=False)
    monkeypatch.setattr(faceage.demo, "DEFAULT_DATA", tmp_path / "absent")
    result = faceage.demo.run_demo(out=tmp_path / "out", workers=1)
    assert result.data.name == "images" and result.manifest is None and result.run is None
    faces = pd.read_csv(result.aligned / "faces.csv").set_index("src")
    assert len(faces) == 6  # the wheel's photos; the four masked faces defeat RetinaFace-MobileNet0.25
    assert faces.loc["t1.jpg", "status"] == "ok" and faces.loc["t1.jpg", "n_faces"] == 6
    assert faces.loc["Tom_Hanks_54745.png", "status"] == "ok"
    assert "predicted with the bundled model" in result.notes[0]
    predicted = pd.read_csv(tmp_path / "out" / "predict.csv")
    group = predicted[predicted["path"].str.endswith("t1.jpg") & (predicted["status"] == "ok")]
    assert len(group) == 6 and group["pred"].between(5, 80).all() and (group["std"] > 1).all()
    hanks = predicted[predicted["path"].str.endswith("Tom_Hanks_54745.png")]
    assert len(hanks) == 1 and 25 <= float(hanks["pred"].iloc[0]) <= 75  # an adult
    assert result.drawn is not None and (result.drawn / "t1.jpg").is_file()
