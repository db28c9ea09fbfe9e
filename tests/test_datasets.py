"""Dataset adapters: each real example in ../shared/data parses to the counts its README states; hand-made
files cover the formats without real data here; malformed names are refused with examples."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from faceage.core.errors import FaceageError
from faceage.manifest.datasets import CsvColumns, LabelOptions, load_labels


def _touch(folder: Path, *names: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


def _subjects(table: pd.DataFrame) -> int:
    return int(table["subject"][table["subject"] != ""].nunique())


def test_morph2_folder_and_labels_csv_agree(morph_dir: Path) -> None:
    from_names = load_labels("morph2", morph_dir / "images").table
    from_csv = load_labels("morph2", morph_dir / "labels.csv").table
    assert len(from_names) == 3037 and _subjects(from_names) == 1563
    assert (from_names["age"].min(), from_names["age"].max()) == (30, 75)
    pd.testing.assert_frame_equal(from_names, from_csv)
    row = from_names.set_index("path").loc["009055_1M54.JPG"]
    assert (row["age"], row["subject"], row["dataset"]) == (54.0, "009055", "morph2")


def test_fgnet_file_list(fgnet_list: Path) -> None:
    table = load_labels("fgnet", fgnet_list).table
    assert len(table) == 1002 and _subjects(table) == 82
    assert (table["age"].min(), table["age"].max()) == (0, 69)
    by_path = table.set_index("path")
    assert by_path.loc["001a02.JPG", "age"] == 2 and by_path.loc["001a02.JPG", "subject"] == "001"
    assert by_path.loc["001A43a.JPG", "age"] == 43 and by_path.loc["009A16b.jpg", "subject"] == "009"


def test_fgnet_folder_and_list_disagreement(tmp_path: Path) -> None:
    table = load_labels("fgnet", _touch(tmp_path / "img", "001A02.JPG", "002a10b.jpg", "notes.txt")).table
    assert table[["path", "age", "subject"]].values.tolist() == [["001A02.JPG", 2.0, "001"],
                                                                 ["002a10b.jpg", 10.0, "002"]]
    (tmp_path / "list.csv").write_text("file_name,subject_id,age\n001A02.JPG,1,2\n002A10.JPG,2,11\n")
    with pytest.raises(FaceageError, match=r"list.csv, row 3, column 'age': '11' disagrees"):
        load_labels("fgnet", tmp_path / "list.csv")


def test_utkface_folder(utkface_dir: Path) -> None:
    table = load_labels("utkface", utkface_dir).table
    assert len(table) == 4000 and _subjects(table) == 0
    assert (table["age"].min(), table["age"].max()) == (1, 115)


def test_clap2016_shared_labels_csv(chalearn_dir: Path) -> None:
    table = load_labels("clap2016", chalearn_dir).table
    assert len(table) == 1400 and int((table["age_std"] == 0).sum()) == 5
    assert set(table["split"]) == {"test"}
    row = table.set_index("path").loc["005613.jpg"]
    assert row["age"] == 23 and row["age_std"] == pytest.approx(5.45931097)


def test_clap2016_official_csvs(tmp_path: Path) -> None:
    (tmp_path / "train_gt.csv").write_text("image,mean,stdv\n000000.jpg,36.2,4.5\n000001.jpg,20.0,0\n")
    (tmp_path / "valid_gt.csv").write_text("image,mean,stdv\n004113.jpg,51.5,6.1\n")
    (tmp_path / "test_gt.csv").write_text("image,mean,stdv\n005613.jpg,23.3,5.4\n")
    table = load_labels("clap2016", tmp_path).table
    assert table[["path", "age", "age_std", "split"]].values.tolist() == [
        ["test/005613.jpg", 23.3, 5.4, "test"], ["train/000000.jpg", 36.2, 4.5, "train"],
        ["train/000001.jpg", 20.0, 0.0, "train"], ["valid/004113.jpg", 51.5, 6.1, "valid"]]
    one = load_labels("clap2016", tmp_path / "valid_gt.csv").table
    assert one["path"].tolist() == ["valid/004113.jpg"]


def test_appa_real_apparent_or_real(tmp_path: Path) -> None:
    header = "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n"
    (tmp_path / "gt_avg_train.csv").write_text(header + "000000.jpg,36,5.0,1.2,4\n")
    (tmp_path / "gt_avg_test.csv").write_text(header + "005613.jpg,38,23.5,3.0,25\n")
    apparent = load_labels("appa-real", tmp_path).table
    assert apparent[["path", "age", "age_std", "split"]].values.tolist() == [
        ["test/005613.jpg", 23.5, 3.0, "test"], ["train/000000.jpg", 5.0, 1.2, "train"]]
    real = load_labels("appa-real", tmp_path, LabelOptions(age_kind="real")).table
    assert real["age"].tolist() == [25.0, 4.0] and real["age_std"].isna().all()


def test_morph2_official_csv(tmp_path: Path) -> None:
    csv = tmp_path / "morph_2008_nonCommercial.csv"
    csv.write_text("id_num,picture_num,dob,doa,race,gender,facial_hair,age,age_diff,glasses,photo\n"
                   "9055,1,1/1/1950,1/1/2004,B,M,0,54,0,0,Album2/009055_1M54.JPG\n"
                   "9056,0,1/1/1980,1/1/2000,W,F,0,20,0,0,Album2\\009056_00F20.JPG\n")
    table = load_labels("morph2", csv).table
    assert table[["path", "age", "subject"]].values.tolist() == [
        ["Album2/009055_1M54.JPG", 54.0, "9055"], ["Album2/009056_00F20.JPG", 20.0, "9056"]]


def test_generic_csv_with_column_flags(tmp_path: Path) -> None:
    csv = tmp_path / "mine.csv"
    csv.write_text("img,years,who,sd,part\na/1.png,30,p1,2.0,train\na/2.png,31,p1,,val\nb/3.png,60,p2,1.5,Test\n")
    cols = CsvColumns(path="img", age="years", subject="who", std="sd", split="part")
    table = load_labels("csv", csv, LabelOptions(columns=cols)).table
    assert table["split"].tolist() == ["train", "valid", "test"]
    assert table["subject"].tolist() == ["p1", "p1", "p2"] and table["age_std"].isna().tolist() == [0, 1, 0]
    with pytest.raises(FaceageError, match=r"mine.csv: missing column 'path'.*--path-col"):
        load_labels("csv", csv)


def test_negative_age_names_file_row_column(tmp_path: Path) -> None:
    csv = tmp_path / "neg.csv"
    csv.write_text("path,age\na.jpg,30\nb.jpg,-2\n")
    with pytest.raises(FaceageError, match=r"neg.csv, row 3, column 'age': -2 is outside"):
        load_labels("csv", csv)


def test_duplicates_are_dropped_and_reported(tmp_path: Path) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("path,age\na.jpg,30\na.jpg,30\nb.jpg,40\nb.jpg,41\nc.jpg,50\n")
    labels = load_labels("csv", csv)
    assert labels.table["path"].tolist() == ["a.jpg", "c.jpg"]
    assert labels.dropped[["path", "reason"]].values.tolist() == [
        ["a.jpg", "duplicate"], ["b.jpg", "duplicate"], ["b.jpg", "duplicate"]]


@pytest.mark.parametrize(
    ("dataset", "good", "bad"),
    [
        ("morph2", "009055_1M54.JPG", ["009055_1X54.JPG", "9055-1M54.JPG"]),
        ("fgnet", "001A02.JPG", ["001B02.JPG", "01A02.JPG"]),
        ("utkface", "25_0_1_20170116174525125.jpg.chip.jpg",
         ["39_1_20170116174525125.jpg.chip.jpg", "55_0_0_20170116232725357jpg.chip.jpg"]),
    ],
)
def test_malformed_names_refused_with_examples_or_skipped(tmp_path: Path, dataset: str, good: str,
                                                          bad: list[str]) -> None:
    folder = _touch(tmp_path / dataset, good, *bad)
    with pytest.raises(FaceageError) as err:
        load_labels(dataset, folder)
    message = str(err.value)
    assert "2 of 3 names do not match" in message and "--skip-malformed" in message
    assert all(name in message for name in bad) and "e.g." in message
    labels = load_labels(dataset, folder, LabelOptions(skip_malformed=True))
    assert labels.table["path"].tolist() == [good]
    assert sorted(labels.dropped["path"]) == sorted(bad)
    assert set(labels.dropped["reason"]) == {"malformed name"}


def test_unknown_dataset_and_missing_source(tmp_path: Path) -> None:
    with pytest.raises(FaceageError, match="unknown dataset 'imdb'"):
        load_labels("imdb", tmp_path)
    with pytest.raises(FaceageError, match=r"nope\.csv: no such file"):
        load_labels("csv", tmp_path / "nope.csv")


def test_rows_longer_than_the_header(tmp_path: Path) -> None:
    """A trailing comma on every data row once made `path` the index (ages read from the empty column): it is
    now read as written; a real extra value is refused."""
    labels = tmp_path / "labels.csv"
    labels.write_text("path,age\na.jpg,20,\nb.jpg,30,\n")
    table = load_labels("csv", labels).table
    assert table["path"].tolist() == ["a.jpg", "b.jpg"] and table["age"].tolist() == [20.0, 30.0]
    labels.write_text("path,age\na.jpg,20,7\nb.jpg,30,8\n")
    with pytest.raises(FaceageError, match=r"labels\.csv: rows have more fields than the header"):
        load_labels("csv", labels)


def test_morph2_csv_with_some_columns_judges_duplicates_on_its_own_values(tmp_path: Path) -> None:
    """Ages from the CSV, subjects from the names: a photo listed twice with two ages was kept with the last
    age (the names agreed, so the conflict was never seen); now it is dropped as conflicting."""
    csv = tmp_path / "labels.csv"
    csv.write_text("photo,age\n000001_0M30.JPG,30\n000001_0M30.JPG,31\n000002_0F40.JPG,41\n"
                   "000002_0F40.JPG,41\n000003_0M50.JPG,50\n")
    labels = load_labels("morph2", csv)
    assert labels.table[["path", "age", "subject"]].values.tolist() == [
        ["000002_0F40.JPG", 41.0, "000002"], ["000003_0M50.JPG", 50.0, "000003"]]
    assert sorted(labels.dropped["detail"]) == ["conflicting labels", "conflicting labels",
                                                "listed twice, same label"]
