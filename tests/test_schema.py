"""The table contracts: a bad table is refused with the file, row and column named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from faceage.core.schema import MANIFEST, PREDICTIONS, TableError, read_table, validate


def _manifest(**overrides: list[object]) -> pd.DataFrame:
    cols: dict[str, list[object]] = {
        "path": ["a.jpg", "b.jpg"], "age": ["30", "41"], "age_std": ["", "2.5"],
        "subject": ["s1", ""], "fold": ["0", "1"],
    }
    cols.update(overrides)
    return pd.DataFrame(cols)


def test_valid_manifest_gets_the_spec_dtypes() -> None:
    out = validate(_manifest(), MANIFEST, "m.csv")
    assert out["age"].tolist() == [30.0, 41.0]
    assert out["fold"].dtype == "int64"
    assert pd.isna(out["age_std"].iloc[0]) and out["age_std"].iloc[1] == 2.5


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"age": ["30", "abc"]}, "row 3, column 'age': 'abc' is not a number"),
        ({"age": ["30", "101"]}, "row 3, column 'age': 101 is outside"),
        ({"age": ["-1", "3"]}, "row 2, column 'age': -1 is outside"),
        ({"fold": ["0", "1.5"]}, "row 3, column 'fold': 1.5 is not a whole number"),
        ({"path": ["a.jpg", "a.jpg"]}, "row 3, column 'path': duplicate value 'a.jpg'"),
        ({"path": ["a.jpg", ""]}, "row 3, column 'path': empty value"),
    ],
)
def test_bad_values_name_file_row_and_column(overrides: dict[str, list[object]], expected: str) -> None:
    with pytest.raises(TableError, match=expected.replace("(", r"\(")):
        validate(_manifest(**overrides), MANIFEST, "m.csv")


def test_missing_column_and_empty_table() -> None:
    with pytest.raises(TableError, match=r"m.csv: missing column\(s\) \['fold'\]"):
        validate(_manifest().drop(columns="fold"), MANIFEST, "m.csv")
    with pytest.raises(TableError, match="has no rows"):
        validate(_manifest().iloc[:0], MANIFEST, "m.csv")


def test_read_table_names_missing_file_and_reads_optional_columns(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="no such file"):
        read_table(tmp_path / "nope.csv", PREDICTIONS)
    f = tmp_path / "p.csv"
    f.write_text("path,age,pred,std\nx.jpg,20,22,1.5\n")
    out = read_table(f, PREDICTIONS)
    assert out["std"].iloc[0] == 1.5 and "mean" not in out.columns


def test_whole_numbers_are_exact_beyond_float_precision() -> None:
    from faceage.core.schema import FACES

    row = {c.name: "" for c in FACES.columns}
    row.update(src="a.jpg", status="no_face", n_faces="0", detector="retinaface", settings="x",
               src_bytes="10", src_mtime_ns="1764316800123456789")
    out = validate(pd.DataFrame([row]), FACES, "faces.csv")
    assert int(out["src_mtime_ns"].iloc[0]) == 1764316800123456789


def test_rows_longer_than_the_header_are_refused(tmp_path: Path) -> None:
    """pandas takes an extra leading field as the index, shifting every column (pred read as age …)."""
    path = tmp_path / "p.csv"
    path.write_text("path,age,pred\na.jpg,20,22,5\n")
    with pytest.raises(TableError, match=r"p\.csv: rows have more fields than the header"):
        read_table(path, PREDICTIONS)
