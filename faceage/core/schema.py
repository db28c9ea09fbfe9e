"""The tables that stages exchange: their columns, types and checks, in one place.

Every stage reads its input through `read_table` / `validate`, so a bad file fails at the door with a
message naming the file, the row (as numbered in the file, header = line 1) and the column.
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np
import pandas as pd

from faceage.core.errors import FaceageError
from faceage.core.header import read_header
from faceage.core.spreadsheet import unescape_cells

ColumnType = Literal["str", "int", "float"]

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
LANDMARK_COLUMNS = tuple(f"{name}_{axis}" for name in LANDMARK_NAMES for axis in ("x", "y"))
BOX_COLUMNS = ("box_x1", "box_y1", "box_x2", "box_y2")
MAX_AGE = 100
MAX_PLAUSIBLE_AGE = 1000.0  # a predictions table with larger ages or errors is broken, not a result
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, type, whether it must be present, and the allowed range."""

    name: str
    type: ColumnType
    required: bool = True
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    doc: str = ""
    inside: bool = False  # a path relative to the table's folder: never absolute, never climbing out


@dataclass(frozen=True)
class TableSpec:
    """A named table layout; `unique` names a column whose values may not repeat."""

    kind: str
    columns: tuple[Column, ...]
    unique: str | None = None

    def names(self) -> list[str]:
        return [c.name for c in self.columns]


FACES = TableSpec(
    "faces",
    (
        Column("src", "str", doc="source image, relative to SRC", inside=True),
        Column("dst", "str", nullable=True, inside=True, doc="aligned image in DST; empty unless ok"),
        Column("status", "str", doc="ok, no_face, too_small, unreadable, too_large, unsupported"),
        Column("n_faces", "int", min=0, doc="faces the detector found"),
        Column("score", "float", nullable=True, doc="detector confidence of the kept face"),
        *(Column(c, "float", nullable=True, doc="box of the kept face, source pixels") for c in BOX_COLUMNS),
        *(Column(c, "float", nullable=True, doc="landmark, source pixels") for c in LANDMARK_COLUMNS),
        Column("detector", "str", doc="backend that produced the row"),
        Column("settings", "str", doc="hash of the settings; a rerun redoes rows whose hash differs"),
        Column("src_bytes", "int", min=0, doc="size of the source file when aligned"),
        Column("src_mtime_ns", "int", doc="modification time of the source file when aligned"),
        Column("error", "str", nullable=True, doc="readable reason when status is not ok"),
    ),
    unique="src",
)

LABELS = TableSpec(
    "labels",
    (
        Column("path", "str", doc="image path relative to the dataset root", inside=True),
        Column("age", "float", min=0, doc="age in years (real, or the crowd mean for apparent age)"),
        Column("age_std", "float", nullable=True, min=0, doc="crowd standard deviation (apparent age)"),
        Column("subject", "str", nullable=True, doc="identity; empty where the dataset has none"),
        Column("split", "str", nullable=True, doc="official split: train, valid or test"),
        Column("dataset", "str", doc="adapter name"),
    ),
    unique="path",
)

MANIFEST = TableSpec(
    "manifest",
    (
        Column("path", "str", doc="aligned image, relative to the aligned folder", inside=True),
        Column("age", "float", min=0, max=MAX_AGE, doc="training target in years"),
        Column("age_std", "float", nullable=True, min=0, doc="crowd std, empty when unknown"),
        Column("subject", "str", nullable=True, doc="identity, empty when unknown"),
        Column("fold", "int", min=-1, doc="test fold of the row; -1: never tested (official train/valid)"),
        Column("val_fold", "int", required=False, min=-1,
               doc="k: the row validates the model whose test fold is k; -1: none"),
        Column("dataset", "str", required=False, doc="dataset adapter it was built with (every row alike)"),
        Column("protocol", "str", required=False, doc="rs, se, lopo or official (every row alike)"),
    ),
    unique="path",
)
RECORDED_COLUMNS = ("dataset", "protocol")  # facts of a whole manifest, repeated in each row

PREDICTIONS = TableSpec(
    "predictions",
    (
        Column("path", "str", doc="image"),
        Column("age", "float", min=0, max=MAX_PLAUSIBLE_AGE, doc="true (or crowd mean) age"),
        Column("pred", "float", min=0, max=MAX_PLAUSIBLE_AGE,
               doc="predicted age: round(mean) for the mean-variance model"),
        Column("mean", "float", required=False, min=-MAX_PLAUSIBLE_AGE, max=MAX_PLAUSIBLE_AGE,
               doc="expected age of the predicted distribution"),
        Column("std", "float", required=False, min=0, max=MAX_PLAUSIBLE_AGE,
               doc="standard deviation of the predicted distribution"),
        Column("age_std", "float", required=False, nullable=True, min=0, doc="crowd std (ε-error)"),
        Column("subject", "str", required=False, nullable=True, doc="identity"),
        Column("fold", "int", required=False, doc="test fold"),
        Column("train_median", "float", required=False, nullable=True, min=0, max=MAX_PLAUSIBLE_AGE,
               doc="median age of the fold's training rows: the baseline a model must beat"),
    ),
    unique="path",
)

FACE_PREDICTIONS = TableSpec(
    "face predictions",
    (
        Column("path", "str", doc="source image, as found from the inputs given"),
        Column("face", "int", nullable=True, min=0, doc="face index in the image, best detector score first"),
        Column("status", "str", doc="ok, too_small, no_face, unreadable, too_large or unsupported"),
        Column("score", "float", nullable=True, doc="detector confidence"),
        *(Column(c, "float", nullable=True, doc="face box, upright image pixels") for c in BOX_COLUMNS),
        Column("pred", "float", nullable=True, min=0, doc="predicted age: round(mean), half up"),
        Column("mean", "float", nullable=True, doc="expected age of the (fold-averaged) distribution"),
        Column("std", "float", nullable=True, min=0, doc="its standard deviation; 0 for the l2 model"),
        Column("error", "str", nullable=True, doc="why there is no prediction"),
        Column("model", "str", required=False, nullable=True, doc="identity of the model that predicted"),
        Column("settings", "str", required=False, nullable=True, doc="hash of the align settings it used"),
    ),
)

class TableError(FaceageError, ValueError):
    """A table broke its contract; the message names file, row and column and says what to do."""


def _where(source: str, row: int | None, column: str | None) -> str:
    parts = [source]
    if row is not None:
        parts.append(f"row {row + 2}")  # +1 for the header line, +1 for 1-based numbering
    if column is not None:
        parts.append(f"column '{column}'")
    return ", ".join(parts)


def validate(df: pd.DataFrame, spec: TableSpec, source: str = "<table>") -> pd.DataFrame:
    """Check `df` against `spec`; return a copy with its dtypes, or raise TableError at the first fault."""
    missing = [c.name for c in spec.columns if c.required and c.name not in df.columns]
    if missing:
        raise TableError(
            f"{source}: missing column(s) {missing}; a {spec.kind} table needs {spec.names()} "
            f"(optional ones may be left out). Fix the header or regenerate the file."
        )
    if df.empty:
        raise TableError(f"{source}: the {spec.kind} table has no rows.")
    out = df.copy()
    for col in spec.columns:
        if col.name not in out.columns:
            continue
        out[col.name] = _coerce(out[col.name], col, source)
    if spec.unique is not None:
        dup = out[spec.unique].duplicated(keep="first")
        if dup.any():
            row = int(np.flatnonzero(dup.to_numpy())[0])
            raise TableError(
                f"{_where(source, row, spec.unique)}: duplicate value {out[spec.unique].iloc[row]!r} "
                f"(each {spec.unique} may appear once). Remove the repeated row."
            )
    return out


def _coerce(values: pd.Series, col: Column, source: str) -> pd.Series:
    if col.type == "str":
        missing = values.isna() | (values.astype(str).str.strip() == "")
        if missing.any() and not col.nullable:
            row = int(np.flatnonzero(missing.to_numpy())[0])
            raise TableError(f"{_where(source, row, col.name)}: empty value; every row needs one.")
        text = values.astype("string").fillna("").astype(object)
        if col.inside:
            _check_inside(text, col, source)
        return text
    numeric = pd.to_numeric(values, errors="coerce")
    bad_text = numeric.isna() & values.notna() & (values.astype(str).str.strip() != "")
    if bad_text.any():
        row = int(np.flatnonzero(bad_text.to_numpy())[0])
        raise TableError(
            f"{_where(source, row, col.name)}: {values.iloc[row]!r} is not a number; write a {col.type}."
        )
    arr = numeric.to_numpy(dtype=float)
    if not col.nullable and np.isnan(arr).any():
        row = int(np.flatnonzero(np.isnan(arr))[0])
        raise TableError(f"{_where(source, row, col.name)}: missing (NaN) value; every row needs one.")
    if np.isinf(arr).any():
        row = int(np.flatnonzero(np.isinf(arr))[0])
        raise TableError(f"{_where(source, row, col.name)}: infinite value.")
    finite = ~np.isnan(arr)
    for bound, bad in ((col.min, arr < (col.min or 0)), (col.max, arr > (col.max or 0))):
        if bound is not None and (bad & finite).any():
            row = int(np.flatnonzero(bad & finite)[0])
            raise TableError(
                f"{_where(source, row, col.name)}: {arr[row]:g} is outside the allowed range "
                f"[{'-inf' if col.min is None else col.min}, {'inf' if col.max is None else col.max}]."
            )
    if col.type == "int":
        if (finite & (arr != np.round(arr))).any():
            row = int(np.flatnonzero(finite & (arr != np.round(arr)))[0])
            raise TableError(f"{_where(source, row, col.name)}: {arr[row]:g} is not a whole number.")
        big = finite & ((arr < _INT64[0]) | (arr > _INT64[1]))
        if big.any():
            row = int(np.flatnonzero(big)[0])
            raise TableError(f"{_where(source, row, col.name)}: {values.iloc[row]!r} is too large for a "
                             f"whole-number column; fix the value or regenerate the file.")
        return _exact_ints(values, finite).astype("Int64" if col.nullable else "int64")
    return pd.Series(arr, index=values.index, dtype="float64")


def _check_inside(values: pd.Series, col: Column, source: str) -> None:
    """Refuse a path that is absolute or climbs out of its folder with `..` (links inside stay the user's)."""
    for row, value in enumerate(values.tolist()):
        if value and escapes(value):
            raise TableError(f"{_where(source, row, col.name)}: {value!r} leaves the folder it is relative "
                             f"to (absolute, or climbing out with '..'); give a path inside that folder.")


def escapes(path: str) -> bool:
    """Whether a table's relative path is absolute (POSIX, Windows drive or UNC) or climbs out with `..`."""
    text = path.replace("\\", "/")
    return (text.startswith(("/", "~")) or re.match(r"^[A-Za-z]:", text) is not None
            or ".." in PurePosixPath(text).parts)


def _exact_ints(values: pd.Series, finite: np.ndarray) -> pd.Series:
    """Whole numbers parsed exactly (float64 rounds values above 2**53, such as nanosecond file times)."""
    pairs = zip(values.tolist(), finite, strict=True)
    exact = [int(Decimal(str(v).strip())) if ok else None for v, ok in pairs]
    return pd.Series(exact, index=values.index, dtype="Int64")


def read_csv_strings(path: str | os.PathLike[str], fix: str, skip_initial_space: bool = False,
                     empty_ok: bool = False) -> pd.DataFrame:
    """A CSV as text cells (empty cells NaN). Rows longer than the header are refused: pandas would silently
    make their first field the index and shift every column. `fix` says what to do with an unreadable file;
    `empty_ok` reads an empty file as a table without rows. A FIFO or device is refused, never opened."""
    if not Path(path).is_file():
        kind = "does not exist" if not Path(path).exists() else "is not a regular file"
        raise TableError(f"{path}: {kind}; {fix}")
    try:
        read_header(path)  # refuses a monstrous first line before pandas reads it
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], index_col=False,
                             skipinitialspace=skip_initial_space)
        _refuse_repeated_columns(path)  # pandas renames a repeated `pred` to `pred.1` without a word
        return unescape_cells(df)  # a cell written as '=x (core.spreadsheet) reads back as =x
    except pd.errors.ParserWarning as exc:
        raise TableError(f"{path}: rows have more fields than the header ({exc}); fix the file.") from exc
    except pd.errors.EmptyDataError as exc:
        if empty_ok:
            return pd.DataFrame()
        raise TableError(f"{path}: the file is empty; {fix}") from exc
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise TableError(f"{path}: not a readable CSV ({exc}); {fix}") from exc


def _refuse_repeated_columns(path: str | os.PathLike[str]) -> None:
    header = read_header(path)
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise TableError(f"{path}: column(s) {repeated} appear more than once in the header; keep one of "
                         f"each.")


def read_table(path: str | os.PathLike[str], spec: TableSpec) -> pd.DataFrame:
    """Read a CSV and validate it against `spec`; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise TableError(f"{path}: no such file; create it with the stage that writes {spec.kind} tables.")
    df = read_csv_strings(path, f"regenerate it with the stage that writes {spec.kind} tables.")
    return validate(df, spec, str(path))
