"""`faceage manifest` end to end on a hand-made faces.csv, the pre-aligned path, and the validating reader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from faceage.cli import app
from faceage.core.errors import FaceageError
from faceage.core.layout import aligned_relpath
from faceage.core.schema import FACES, TableError
from faceage.manifest.build import build_manifest, write_manifest
from faceage.manifest.datasets import LabelOptions
from faceage.manifest.protocols import split_for_fold
from faceage.manifest.read import ManifestFacts, manifest_facts, read_manifest

MORPH_NAMES = ["000001_0M30.JPG", "000001_1M31.JPG", "000002_0F40.JPG", "000003_0M50.JPG", "000004_2F61.JPG",
               "000005_0M70.JPG", "000006_0F33.JPG", "000007_1M45.JPG", "000008_0F52.JPG", "000009_0M64.JPG"]


def _faces_csv(folder: Path, statuses: dict[str, str]) -> Path:
    """A faces.csv as `faceage align` writes it: one row per source, dst and a file only for ok rows."""
    rows = []
    for src, status in statuses.items():
        ok = status == "ok"
        row: dict[str, object] = dict.fromkeys(FACES.names(), "")
        row.update(src=src, dst=aligned_relpath(src) if ok else "", status=status, n_faces=int(ok),
                   detector="hand", settings="x", src_bytes=1, src_mtime_ns=1,
                   error="" if ok else f"{status} here")
        rows.append(row)
        if ok:
            (folder / aligned_relpath(src)).parent.mkdir(parents=True, exist_ok=True)
            (folder / aligned_relpath(src)).write_bytes(b"jpeg")
    pd.DataFrame(rows, columns=FACES.names()).to_csv(folder / "faces.csv", index=False)
    return folder


def test_cli_end_to_end_on_hand_made_faces_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failed = {"000010_0M40.JPG": "no_face", "000011_0F41.JPG": "unreadable"}
    statuses = dict.fromkeys(MORPH_NAMES, "ok") | failed
    aligned = _faces_csv(tmp_path / "aligned", statuses)
    labels = tmp_path / "labels.csv"  # one aligned image lacks a label; one label has no image
    labels.write_text("file_name,subject_id,age\n" + "".join(
        f"{n},{n[:6]},{n[-6:-4]}\n" for n in [*MORPH_NAMES[1:], "000010_0M40.JPG", "000099_0M99.JPG"]))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["manifest", str(aligned), "--dataset", "morph2", "--protocol", "se",
                                      "--labels", str(labels), "--folds", "3", "--val-fraction", "0.2",
                                      "--dropped", "dropped.csv"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "manifests" / "morph2" / "se.csv"
    m = read_manifest(out, images_root=aligned)
    assert sorted(m["path"]) == sorted(aligned_relpath(n) for n in MORPH_NAMES[1:])
    assert m.attrs["protocol"] == "se" and sorted(m["fold"].unique()) == [0, 1, 2]
    assert m.set_index("path").loc["000004_2F61.jpg", "age"] == 61
    dropped = pd.read_csv(tmp_path / "dropped.csv").set_index("path")["reason"].to_dict()
    assert dropped == {"000010_0M40.JPG": "no_face", "000011_0F41.JPG": "unreadable",
                       "000001_0M30.JPG": "no label", "000099_0M99.JPG": "not aligned"}
    for word in ("morph2 / se: 9 images, 9 subjects", "dropped (no_face): 1", "dropped (no label): 1"):
        assert word in result.output
    for k in range(3):
        part = split_for_fold(m, k)
        assert len(part.val) >= 1 and len(part.train) + len(part.val) + len(part.test) == 9


def test_names_come_from_faces_csv_without_labels(tmp_path: Path) -> None:
    faces = dict.fromkeys(MORPH_NAMES, "ok") | {"junk.JPG": "no_face"}
    result = build_manifest("morph2", "rs", _faces_csv(tmp_path / "a", faces), folds=2, val_fraction=0)
    assert len(result.manifest) == 10 and result.summary.dropped_counts() == {"no_face": 1}
    assert result.summary.subjects == 9 and (result.manifest["val_fold"] == -1).all()
    aligned = _faces_csv(tmp_path / "b", faces | {"junk.JPG": "ok"})
    with pytest.raises(FaceageError, match=r"1 of 11 names do not match the morph2 pattern.*junk\.JPG"):
        build_manifest("morph2", "rs", aligned, folds=2)
    skipped = build_manifest("morph2", "rs", aligned, folds=2, options=LabelOptions(skip_malformed=True))
    assert skipped.summary.dropped_counts() == {"malformed name": 1}


def test_outputs_never_replace_an_input_or_a_folder(tmp_path: Path) -> None:
    """`-o ALIGNED/faces.csv` once replaced align's table with the manifest; `-o DIR` was a traceback."""
    aligned = _faces_csv(tmp_path / "a", dict.fromkeys(MORPH_NAMES, "ok"))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,age\n" + "".join(f"{n},{n[-6:-4]}\n" for n in MORPH_NAMES))
    before = {p: p.read_bytes() for p in (aligned / "faces.csv", labels)}
    runner = CliRunner()
    base = ["manifest", str(aligned), "-d", "csv", "-p", "rs", "--folds", "2", "--labels", str(labels)]
    for extra, message in (
        (["-o", str(aligned / "faces.csv")], "is an input of the command"),
        (["-o", str(labels)], "is an input of the command"),
        (["-o", str(tmp_path / "m.csv"), "--dropped", str(aligned / "faces.csv")], "is an input"),
        (["-o", str(tmp_path)], "is a folder"),
        (["-o", str(tmp_path / "m.csv"), "--dropped", str(tmp_path / "m.csv")], "each its own file"),
        # an unwritable --dropped: no traceback, and the manifest is not written without it
        (["-o", str(tmp_path / "m.csv"), "--dropped", str(labels / "d.csv")], "cannot write it"),
    ):
        result = runner.invoke(app, base + extra)
        assert isinstance(result.exception, FaceageError) and message in str(result.exception), result.output
    assert {p: p.read_bytes() for p in before} == before and not (tmp_path / "m.csv").exists()
    with pytest.raises(FaceageError, match="unknown dataset 'nope'; choose one of morph2"):
        build_manifest("nope", "rs", aligned)
    with pytest.raises(FaceageError, match="--format 'webp': choose one of jpg, png"):  # was a ValueError
        build_manifest("fgnet", "lopo", None, labels=labels, source="labels-only", fmt="webp")


def test_missing_faces_csv_and_pre_aligned(tmp_path: Path, chalearn_dir: Path) -> None:
    with pytest.raises(FaceageError, match=r"faces\.csv not found.*--pre-aligned"):
        build_manifest("clap2016", "official", tmp_path, labels=chalearn_dir)
    result = build_manifest("clap2016", "official", chalearn_dir, labels=chalearn_dir, source="pre-aligned")
    m = result.manifest
    assert len(m) == 1400 and set(m["fold"]) == {0} and int((m["age_std"] == 0).sum()) == 5


def test_ages_outside_range_are_dropped(utkface_dir: Path) -> None:
    result = build_manifest("utkface", "rs", utkface_dir, source="pre-aligned")
    assert len(result.manifest) == 3997 and result.summary.dropped_counts() == {"age outside 0..100": 3}


OLD_HEADER = "path,age,age_std,subject,fold,val_fold"  # a manifest from before they recorded their protocol


def _write(tmp_path: Path, name: str, rows: list[str], header: str = OLD_HEADER,
           protocol: str | None = None) -> Path:
    """A manifest of `rows`; with `protocol`, recorded as `faceage manifest` writes it (dataset morph2)."""
    if protocol is not None:
        header, rows = f"{header},dataset,protocol", [f"{row},morph2,{protocol}" for row in rows]
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD = ["a.jpg,30,,s1,0,1", "b.jpg,40,,s2,1,-1", "c.jpg,50,,s3,1,0", "d.jpg,60,,s4,0,-1"]


@pytest.mark.parametrize(
    ("rows", "header", "expected"),
    [
        (["a.jpg,30,s1,0", "b.jpg,40,s2,1"], "path,age,subject,fold",
         r"rs\.csv: missing column\(s\) \['age_std'\]"),
        (GOOD, "path,age,subject,fold", r"rs\.csv: rows have more fields than the header"),
        ([*GOOD, "a.jpg,31,,s1,0,-1"], None, r"rs\.csv, row 6, column 'path': duplicate value 'a\.jpg'"),
        ([*GOOD[:3], "d.jpg,101,,s4,0,-1"], None, r"rs\.csv, row 5, column 'age': 101 is outside"),
        ([*GOOD[:3], "d.jpg,-1,,s4,0,-1"], None, r"rs\.csv, row 5, column 'age': -1 is outside"),
        ([*GOOD[:3], "d.jpg,60,,s4,0,0"], None, r"rs\.csv, row 5, column 'val_fold': equals the row's own"),
        ([*GOOD[:3], "d.jpg,60,,s4,0,7"], None, r"rs\.csv, row 5, column 'val_fold': names a test fold"),
    ],
)
def test_reader_catches_table_errors(tmp_path: Path, rows: list[str], header: str | None,
                                     expected: str) -> None:
    path = _write(tmp_path, "rs.csv", rows, *([header] if header else []))
    with pytest.raises(TableError, match=expected):
        read_manifest(path)


@pytest.mark.parametrize("protocol", ["se", "lopo"])
def test_reader_catches_a_subject_in_two_folds(tmp_path: Path, protocol: str) -> None:
    rows = [*GOOD[:3], "d.jpg,60,,s2,0,-1"]
    path = _write(tmp_path, "any.csv", rows, protocol=protocol)
    with pytest.raises(TableError, match=r"any\.csv, row 5, column 'subject': is also in another fold"):
        read_manifest(path)
    assert len(read_manifest(_write(tmp_path, "se.csv", rows, protocol="rs"))) == 4  # RS shares subjects
    old = _write(tmp_path, "old.csv", rows)
    with pytest.raises(TableError, match="row 5, column 'subject'"):
        read_manifest(old, protocol=protocol)  # no record: the protocol given is checked
    assert read_manifest(old).attrs["protocol"] is None  # nor guessed: used as it is, with a warning


def test_the_recorded_protocol_is_the_one_and_only(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.csv", GOOD, protocol="rs")
    assert read_manifest(path).attrs["protocol"] == "rs"
    assert read_manifest(path, protocol="rs").attrs["protocol"] == "rs"
    with pytest.raises(FaceageError, match=r"big\.csv is a rs manifest \(its 'protocol' column\), not se"):
        read_manifest(path, protocol="se")
    rows = [f"{row},morph2,rs" for row in GOOD[:3]] + ["d.jpg,60,,s4,0,-1,morph2,se"]
    mixed = _write(tmp_path, "mixed.csv", rows, header=f"{OLD_HEADER},dataset,protocol")
    with pytest.raises(TableError, match="column 'protocol': differs from the first row's"):
        read_manifest(mixed)
    unknown = _write(tmp_path, "kfold.csv", GOOD, protocol="kfold")
    with pytest.raises(TableError, match=r"kfold\.csv, row 2, column 'protocol': 'kfold' is not one of"):
        read_manifest(unknown)


def test_build_records_dataset_and_protocol_in_every_row(tmp_path: Path) -> None:
    aligned = tmp_path / "aligned"
    _faces_csv(aligned, dict.fromkeys(MORPH_NAMES, "ok"))
    result = build_manifest("morph2", "rs", aligned, folds=2, val_fraction=0.0)
    write_manifest(result, tmp_path / "anything.csv")
    table = pd.read_csv(tmp_path / "anything.csv")
    assert set(table["dataset"]) == {"morph2"} and set(table["protocol"]) == {"rs"}
    assert manifest_facts(tmp_path / "anything.csv") == ManifestFacts("morph2", "rs")
    assert read_manifest(tmp_path / "anything.csv").attrs["protocol"] == "rs"


def test_reader_catches_missing_images(tmp_path: Path) -> None:
    path = _write(tmp_path, "rs.csv", GOOD, protocol="rs")
    for name in ("a.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"x")
    with pytest.raises(TableError, match=r"rs\.csv, row 3, column 'path': 'b\.jpg' is not a file under .* "
                                         r"\(2 missing in all, e\.g\. b\.jpg, d\.jpg\)"):
        read_manifest(path, images_root=tmp_path)
    assert read_manifest(path).attrs == {"protocol": "rs", "source": str(path)}
