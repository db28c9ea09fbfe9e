"""The align runner: every awkward file, names, resume after an interruption, settings, shards, the CLI."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import faceage.align.run as align_run
from faceage.align.detect import Face
from faceage.align.image import align_image, empty_row
from faceage.align.plan import Job, in_shard, parse_shard
from faceage.align.pool import _Worker
from faceage.align.run import AlignSummary, align_folder
from faceage.align.settings import AlignSettings
from faceage.cli import app, main
from faceage.core.errors import FaceageError
from faceage.core.files import list_images
from faceage.core.layout import output_names
from faceage.core.schema import FACES, read_table


def _align(
    src: Path, dst: Path, settings: AlignSettings | None = None, limit: int | None = None,
    shard: tuple[int, int] | None = None,
) -> AlignSummary:
    """One worker, no progress bar: the tests' way to call the library."""
    settings = settings or AlignSettings()
    return align_folder(src, dst, settings, workers=1, shard=shard, progress=False, limit=limit)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def _table(dst: Path, name: str = "faces.csv") -> pd.DataFrame:
    return read_table(dst / name, FACES).set_index("src")


@pytest.fixture()
def faces_src(morph_dir: Path, tmp_path: Path) -> Path:
    """Eight real photos (copies, so tests may touch them), two in a subfolder."""
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for i, file in enumerate(sorted((morph_dir / "images").iterdir())[100:900:100]):
        shutil.copy2(file, src / ("sub" if i < 2 else "") / file.name)
    return src


def _expected(bad_inputs_dir: Path) -> dict[str, str]:
    lines = (bad_inputs_dir / "EXPECTED.tsv").read_text(encoding="utf-8").splitlines()
    return dict(line.split("\t", 1) for line in lines if line.strip())


def test_every_bad_input_gets_its_expected_row(bad_inputs_dir: Path, tmp_path: Path) -> None:
    before = _digests(bad_inputs_dir)
    summary = _align(bad_inputs_dir, tmp_path / "out")
    assert _digests(bad_inputs_dir) == before  # raw files untouched, byte for byte
    table = _table(tmp_path / "out")
    expected = _expected(bad_inputs_dir)
    images = {name: outcome for name, outcome in expected.items() if outcome != "ignored"}
    assert set(table.index) == set(images)  # every image file has a row; notes.txt does not
    assert summary.total == len(images) and summary.processed == len(images)
    for name, outcome in images.items():
        row = table.loc[name]
        allowed = {word.strip(",") for word in outcome.split() if word.strip(",") in align_run.STATUSES}
        assert row["status"] in allowed, (name, row["status"], row["error"])
        if row["status"] == "ok":
            assert (tmp_path / "out" / row["dst"]).is_file() and row["error"] == ""
        else:
            assert row["dst"] == "" and row["error"]  # a readable reason
    assert table.loc["png_named.jpg", "status"] == "ok"
    assert table.loc["upper case/WITH SPACE é.JPEG", "dst"] == "upper case/WITH SPACE é.jpg"
    # The fixture's second face is cut off at the top of the frame (only hair shows), so neither detector
    # finds it; `test_keep_policy_and_face_count` checks counting two whole faces.
    assert table.loc["two_faces.jpg", "status"] == "ok" and table.loc["two_faces.jpg", "n_faces"] >= 1
    huge = table.loc["huge.jpg"]
    assert huge["box_x2"] - huge["box_x1"] > 2000  # landmarks and box in full-resolution pixels


def test_colliding_names_get_distinct_outputs(faces_src: Path, tmp_path: Path) -> None:
    assert output_names(["x.jpg", "x.png", "y.JPG", "Y.jpeg"], "jpg") == {
        "x.jpg": "x.jpg", "x.png": "x.png.jpg", "Y.jpeg": "Y.jpg", "y.JPG": "y.JPG.jpg",
    }
    # a later name's own-suffix form may itself be taken by a plain name
    assert output_names(["x.jpg", "x.png", "x.png.jpg"], "jpg")["x.png"] == "x.png~2.jpg"
    photo = next(faces_src.glob("*.JPG"))
    src = tmp_path / "pair"
    src.mkdir()
    shutil.copy2(photo, src / "x.jpg")
    shutil.copy2(photo, src / "x.png")  # a JPEG named .png: content decides
    _align(src, tmp_path / "out")
    table = _table(tmp_path / "out")
    assert table["dst"].to_dict() == {"x.jpg": "x.jpg", "x.png": "x.png.jpg"}
    assert (tmp_path / "out" / "x.jpg").is_file() and (tmp_path / "out" / "x.png.jpg").is_file()


def _ctrl_c_at_write(n: int, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Make the n-th crop write raise KeyboardInterrupt (as Ctrl-C would); returns the targets seen."""
    real_write = align_run.write_bytes_atomic
    calls: list[Path] = []

    def interrupted_write(target: Path, data: bytes) -> None:
        calls.append(target)
        if len(calls) == n:
            raise KeyboardInterrupt
        real_write(target, data)

    monkeypatch.setattr(align_run, "write_bytes_atomic", interrupted_write)
    return calls


def test_interrupted_run_leaves_a_consistent_table_and_resumes(
    faces_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the fourth crop is being written: faces.csv lists exactly the crops on disk (the three
    before it, and any the writer thread finished after it); a rerun does the rest only."""
    dst = tmp_path / "out"
    calls = _ctrl_c_at_write(4, monkeypatch)
    with pytest.raises(align_run.AlignInterruptedError) as stopped:
        _align(faces_src, dst)
    monkeypatch.undo()  # writes work again for the rerun
    table = _table(dst)
    written = {p.relative_to(dst).as_posix() for p in dst.rglob("*.jpg")}
    assert 3 <= len(table) < 8 and set(table["dst"]) == written and calls[3].name not in written
    # the summary of what was done travels with the interruption (the CLI prints it)
    assert stopped.value.summary.interrupted and stopped.value.summary.counts == {"ok": len(table)}
    summary = _align(faces_src, dst)
    assert (summary.reused, summary.processed) == (len(table), 8 - len(table))
    assert len(_table(dst)) == 8 and summary.counts == {"ok": 8}


def test_rerun_skips_done_rows_and_redoes_changed_ones(faces_src: Path, tmp_path: Path) -> None:
    dst = tmp_path / "out"
    first = _align(faces_src, dst, limit=3)
    assert (first.processed, first.total) == (3, 3)
    assert _align(faces_src, dst).processed == 5
    again = _align(faces_src, dst)
    assert (again.processed, again.reused) == (0, 8)
    # a changed source, a deleted output, and a changed setting are redone
    photo = sorted(faces_src.glob("*.JPG"))[0]
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    victim = _table(dst)["dst"].iloc[-1]
    (dst / victim).unlink()
    assert _align(faces_src, dst).processed == 2
    changed = _align(faces_src, dst, AlignSettings(quality=80))
    assert changed.processed == 8
    settings = _table(dst)["settings"]
    assert settings.nunique() == 1 and settings.iloc[0] == AlignSettings(quality=80).digest()
    assert AlignSettings(quality=80).digest() != AlignSettings().digest()
    assert AlignSettings(fmt="png", quality=80).digest() == AlignSettings(fmt="png").digest()  # unused by png


def test_shards_split_the_work_and_merge_into_the_full_table(faces_src: Path, tmp_path: Path) -> None:
    rels = list_images(faces_src)
    assert parse_shard("1/2") == (1, 2) and parse_shard(None) is None
    for bad in ("2/2", "x", "1/0"):
        with pytest.raises(FaceageError):
            parse_shard(bad)
    shares = [{r for r in rels if in_shard(r, (i, 2))} for i in range(2)]
    assert shares[0] | shares[1] == set(rels) and not shares[0] & shares[1] and all(shares)
    dst = tmp_path / "sharded"
    for i in range(2):
        summary = _align(faces_src, dst, shard=(i, 2))
        assert summary.processed == len(shares[i])
        assert set(_table(dst, f"faces.shard-{i}-of-2.csv").index) == shares[i]
    assert not (dst / "faces.csv").exists()
    merged = _align(faces_src, dst)
    assert (merged.processed, merged.reused) == (0, len(rels))
    full_dst = tmp_path / "full"
    _align(faces_src, full_dst)
    pd.testing.assert_frame_equal(_table(dst), _table(full_dst))
    assert _digests(dst / "sub") == _digests(full_dst / "sub")


def test_folder_layouts_are_checked(faces_src: Path, tmp_path: Path) -> None:
    with pytest.raises(FaceageError, match="no such folder"):
        _align(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(FaceageError, match="DST is SRC"):
        _align(faces_src, faces_src)
    with pytest.raises(FaceageError, match="inside DST"):
        _align(faces_src / "sub", faces_src)
    with pytest.raises(FaceageError, match="no images"):
        (tmp_path / "empty").mkdir()
        _align(tmp_path / "empty", tmp_path / "o2")
    # DST inside SRC: the outputs are not walked as inputs on the next run
    inner = faces_src / "aligned"
    _align(faces_src, inner)
    assert _align(faces_src, inner).total == 8


def test_broken_links_and_folders_named_like_images(faces_src: Path, tmp_path: Path) -> None:
    (faces_src / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (faces_src / "album.jpg").mkdir()  # a folder with an image-like name is walked, not listed
    shutil.copy2(next(faces_src.glob("*.JPG")), faces_src / "album.jpg" / "inside.jpg")
    _align(faces_src, tmp_path / "out")
    table = _table(tmp_path / "out")
    assert len(table) == 10
    assert table.loc["gone.jpg", "status"] == "unreadable" and "gone.jpg" in table.loc["gone.jpg", "error"]
    assert table.loc["album.jpg/inside.jpg", "status"] == "ok"


def test_linked_folders_are_walked_without_looping(faces_src: Path, tmp_path: Path) -> None:
    """A folder linked into SRC was silently skipped (os.walk does not follow links by default)."""
    (faces_src / "linked").symlink_to(faces_src / "sub", target_is_directory=True)
    (faces_src / "sub" / "loop").symlink_to(faces_src, target_is_directory=True)  # back up the tree
    rels = list_images(faces_src)
    inside = sorted(p.name for p in (faces_src / "sub").iterdir() if p.is_file())
    assert [r for r in rels if r.startswith("linked/")] == [f"linked/{name}" for name in inside]
    assert len(rels) == 10 and not any("loop" in r for r in rels)


def test_an_image_that_breaks_the_pipeline_gets_a_row_not_a_crash(bad_inputs_dir: Path) -> None:
    class Failing:
        name = "failing"

        def detect(self, image: np.ndarray) -> list[Face]:
            raise RuntimeError("boom")

    class Collapsed:
        """Five landmarks on one point: a face no similarity can be fitted to."""

        name = "collapsed"

        def detect(self, image: np.ndarray) -> list[Face]:
            return [Face(np.array([0, 0, 90, 90], np.float32), 0.9, np.full((5, 2), 40, np.float32))]

    worker = _Worker(bad_inputs_dir, AlignSettings(), "digest")
    worker.detector = Failing()
    row, crop = worker(Job("ok_plain.jpg", "ok_plain.jpg", 1, 2))
    assert crop is None and row["status"] == "unreadable" and "RuntimeError: boom" in str(row["error"])
    assert row["n_faces"] == 0 and (row["src_bytes"], row["src_mtime_ns"]) == (1, 2)
    fresh = empty_row("ok_plain.jpg", AlignSettings(), "digest", 1, 2)
    row, crop = align_image(Collapsed(), bad_inputs_dir / "ok_plain.jpg", fresh, AlignSettings(), "x.jpg")
    assert crop is None and row["status"] == "no_face" and "cannot be aligned" in str(row["error"])


def test_too_small_faces_are_reported(faces_src: Path, tmp_path: Path) -> None:
    summary = _align(faces_src, tmp_path / "out", AlignSettings(min_face=1000))
    assert summary.counts == {"too_small": 8}
    row = _table(tmp_path / "out").iloc[0]
    assert "--min-face 1000" in row["error"] and row["n_faces"] == 1 and row["score"] > 0.5
    assert not list((tmp_path / "out").rglob("*.jpg"))


def test_cli_aligns_and_reports(faces_src: Path, tmp_path: Path) -> None:
    args = ["align", str(faces_src), str(tmp_path / "out"), "-j", "2", "--format", "png", "--size", "128"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ok" in result.output and "total" in result.output
    from PIL import Image

    crops = sorted((tmp_path / "out").rglob("*.png"))
    assert len(crops) == 8
    with Image.open(crops[0]) as crop:
        assert crop.size == (128, 128)
    bad = subprocess.run(
        [sys.executable, "-m", "faceage", "align", str(tmp_path / "nowhere"), str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )
    assert bad.returncode == 2 and "no such folder" in " ".join(bad.stderr.split())


def test_cli_ctrl_c_prints_what_is_done_and_how_to_resume(
    faces_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _ctrl_c_at_write(3, monkeypatch)
    monkeypatch.setattr(sys, "argv", ["faceage", "align", str(faces_src), str(tmp_path / "out"), "-j", "1"])
    with pytest.raises(SystemExit) as exited:
        main()
    text = " ".join(capsys.readouterr().err.split())
    assert exited.value.code == 130, text
    assert "(interrupted)" in text and "Run the same command again to resume" in text


def test_a_failed_write_stops_the_run_with_a_message_and_resumes(
    faces_src: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Disk full on the fourth crop: a FaceageError naming it (was an OSError traceback), faces.csv lists the
    crops on disk, and a rerun does the rest. A DST that cannot be created is refused before any work."""
    dst = tmp_path / "out"
    real_write = align_run.write_bytes_atomic
    calls = []

    def full_disk(target: Path, data: bytes) -> None:
        calls.append(target)
        if len(calls) == 4:
            raise OSError(28, "No space left on device")
        real_write(target, data)

    monkeypatch.setattr(align_run, "write_bytes_atomic", full_disk)
    expected = r"cannot write the aligned face .*No space left.*lists every face written.*again to resume"
    with pytest.raises(FaceageError, match=expected):
        _align(faces_src, dst)
    monkeypatch.setattr(align_run, "write_bytes_atomic", real_write)
    table = _table(dst)
    written = {p.relative_to(dst).as_posix() for p in dst.rglob("*.jpg")}
    assert set(table["dst"]) == written and len(table) >= 3
    assert _align(faces_src, dst).reused == len(table) and len(_table(dst)) == 8
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(FaceageError, match="cannot create the output folder"):
        _align(faces_src, tmp_path / "file" / "out")


def test_workers_below_one_are_refused(faces_src: Path, tmp_path: Path) -> None:
    for workers in (0, -2):
        with pytest.raises(FaceageError, match="at least 1 worker"):
            align_folder(faces_src, tmp_path / "out", workers=workers, progress=False)
    assert not (tmp_path / "out").exists()
