"""Dataset adapters: each turns one dataset's own label format into the canonical LABELS table.

`path` is always POSIX and relative to the folder of raw images (the folder given to `faceage align`), so
it joins with the `src` column of faces.csv. Malformed names are errors that show examples and the expected
pattern; with `skip_malformed` they are dropped instead and returned in `Labels.dropped`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from faceage.core.errors import FaceageError
from faceage.core.files import list_images
from faceage.core.schema import read_csv_strings
from faceage.manifest.labels import SPLITS, Labels, finish_labels
from faceage.manifest.names import labels_from_names

AGE_KINDS = ("apparent", "real")

# Header names recognised in label CSVs (compared lower-case, ignoring spaces, '_' and '-').
PATH_NAMES = ("photo", "filename", "file", "image", "imagepath", "img", "path", "name")
AGE_NAMES = ("age", "realage")
SUBJECT_NAMES = ("idnum", "subjectid", "subject", "personid", "identity", "id")


@dataclass(frozen=True)
class CsvColumns:
    """Column names for the generic `csv` adapter (subject, std and split are optional)."""

    path: str = "path"
    age: str = "age"
    subject: str | None = None
    std: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class LabelOptions:
    """Adapter choices that come from the command line."""

    skip_malformed: bool = False
    age_kind: Literal["apparent", "real"] | None = None  # appa-real only; None: apparent
    columns: CsvColumns = field(default_factory=CsvColumns)

    def check(self, dataset: str) -> None:
        """Refuse options that do not apply to `dataset`."""
        if self.age_kind is not None and (dataset != "appa-real" or self.age_kind not in AGE_KINDS):
            raise FaceageError(f"--age {self.age_kind}: for --dataset appa-real only, and one of "
                               f"{', '.join(AGE_KINDS)}.")


def load_labels(dataset: str, source: Path, options: LabelOptions | None = None) -> Labels:
    """Read `dataset`'s labels from `source` (a label file, or a folder of images / label files)."""
    options = options or LabelOptions()
    if dataset not in DATASETS:
        raise FaceageError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    if not source.exists():
        raise FaceageError(f"{source}: no such file or folder; pass the dataset's labels with --labels.")
    return READERS[dataset](source, options)


def _morph2(source: Path, options: LabelOptions) -> Labels:
    """A folder of MORPH images, or a MORPH label CSV (official or the subset's labels.csv).

    In a CSV the path column is found among PATH_NAMES (e.g. `photo`, `file_name`); `age` and a subject column
    (`id_num`, `subject_id` …) are used when present and parsed from the names otherwise.
    """
    if source.is_dir():
        return _named_list(source, options, "morph2")
    table = _read_csv(source)
    path_col = _find_column(table, PATH_NAMES, source, "image path")
    age_col = _find_column(table, AGE_NAMES, source, "age", required=False)
    subject_col = _find_column(table, SUBJECT_NAMES, source, "subject", required=False)
    if age_col is not None and subject_col is not None:
        frame = pd.DataFrame({"path": _paths(table[path_col]), "age": table[age_col],
                              "subject": table[subject_col]})
        return finish_labels(frame, "morph2", str(source))
    paths = _paths(table[path_col])
    # names parsed once each; duplicates are judged below on the CSV's own values, row by row
    parsed = labels_from_names("morph2", list(dict.fromkeys(paths)), str(source), options.skip_malformed)
    from_name = parsed.table.set_index("path")
    keep = pd.Series(paths).isin(from_name.index).to_numpy()
    frame = pd.DataFrame({"path": [p for p, k in zip(paths, keep, strict=True) if k]})
    for target, col in (("age", age_col), ("subject", subject_col)):  # the CSV's column wins
        frame[target] = (table[col].to_numpy()[keep] if col is not None
                         else frame["path"].map(from_name[target]).to_numpy())
    return finish_labels(frame, "morph2", str(source), parsed.dropped)


def _named_reader(dataset: str) -> Callable[[Path, LabelOptions], Labels]:
    def read(source: Path, options: LabelOptions) -> Labels:
        return _named_list(source, options, dataset)
    return read


def _named_list(source: Path, options: LabelOptions, dataset: str) -> Labels:
    """Names from a folder or from a CSV's path column (e.g. FG-NET's published file list); the CSV's own
    age/subject columns, when present, must agree with the names."""
    if source.is_dir():
        return labels_from_names(dataset, list_images(source), str(source), options.skip_malformed)
    table = _read_csv(source)
    path_col = _find_column(table, PATH_NAMES, source, "image name")
    labels = labels_from_names(dataset, _paths(table[path_col]), str(source), options.skip_malformed)
    parsed = labels.table.set_index("path")
    for what, names in (("age", AGE_NAMES), ("subject", SUBJECT_NAMES)):
        col = _find_column(table, names, source, what, required=False)
        if col is None or (what == "subject" and not parsed["subject"].astype(bool).any()):
            continue
        for row, (path, value) in enumerate(zip(_paths(table[path_col]), table[col], strict=True)):
            if path in parsed.index and not _same(value, parsed.at[path, what]):
                raise FaceageError(
                    f"{source}, row {row + 2}, column '{col}': {value!r} disagrees with the {what} "
                    f"{parsed.at[path, what]!r} in the file name {path!r}; fix the list or the name."
                )
    return labels


def _clap2016(source: Path, options: LabelOptions) -> Labels:
    """ChaLearn LAP 2016: official `{train,valid,test}_gt.csv` (image,mean,stdv; images under <split>/), or
    a `labels.csv` with file_name, split, apparent_age_mean_rounded, apparent_age_std (images beside it)."""
    files = _split_files(source, "{}_gt.csv")
    if files:
        frames = [pd.DataFrame({"path": _paths(split + "/" + t[_need(t, "image", f)].astype(str)),
                                "age": t[_need(t, "mean", f)], "age_std": t[_need(t, "stdv", f)],
                                "split": split})
                  for split, f, t in ((s, f, _read_csv(f)) for s, f in files)]
        return finish_labels(pd.concat(frames, ignore_index=True), "clap2016", str(source))
    table_file = source / "labels.csv" if source.is_dir() else source
    t = _read_csv(table_file)
    frame = pd.DataFrame({"path": _paths(t[_need(t, "file_name", table_file)]),
                          "age": t[_need(t, "apparent_age_mean_rounded", table_file)],
                          "age_std": t[_need(t, "apparent_age_std", table_file)],
                          "split": t["split"] if "split" in t.columns else ""})
    return finish_labels(frame, "clap2016", str(table_file))


def _appa_real(source: Path, options: LabelOptions) -> Labels:
    """APPA-REAL `gt_avg_{train,valid,test}.csv`; images under <split>/; age apparent (mean, std) or real."""
    files = _split_files(source, "gt_avg_{}.csv")
    if not files:
        raise FaceageError(f"{source}: no gt_avg_train.csv, gt_avg_valid.csv or gt_avg_test.csv found; "
                           f"pass the APPA-REAL folder or one of those files with --labels.")
    frames = []
    for split, f in files:
        t = _read_csv(f)
        real = options.age_kind == "real"
        frames.append(pd.DataFrame({
            "path": _paths(split + "/" + t[_need(t, "file_name", f)].astype(str)),
            "age": t[_need(t, "real_age" if real else "apparent_age_avg", f)],
            "age_std": None if real else t[_need(t, "apparent_age_std", f)], "split": split}))
    return finish_labels(pd.concat(frames, ignore_index=True), "appa-real", str(source))


def _generic_csv(source: Path, options: LabelOptions) -> Labels:
    """Any table: path and age columns by name; subject, std and split columns optional."""
    if source.is_dir():
        raise FaceageError(f"{source}: is a folder; the csv dataset needs a label file (--labels FILE.csv).")
    cols, t = options.columns, _read_csv(source)
    frame = pd.DataFrame({"path": _paths(t[_need(t, cols.path, source, "--path-col")]),
                          "age": t[_need(t, cols.age, source, "--age-col")]})
    for target, name, flag in (("subject", cols.subject, "--subject-col"), ("age_std", cols.std, "--std-col"),
                               ("split", cols.split, "--split-col")):
        if name is not None:
            frame[target] = t[_need(t, name, source, flag)]
    return finish_labels(frame, "csv", str(source))


def _split_files(source: Path, template: str) -> list[tuple[str, Path]]:
    """(split, file) of per-split label files named like `template` ("{}_gt.csv"): in a folder, or one."""
    candidates = [source / template.format(s) for s in SPLITS] if source.is_dir() else [source]
    return [(split, f) for f in candidates for split in SPLITS
            if f.is_file() and f.name.lower() == template.format(split)]


def _read_csv(path: Path) -> pd.DataFrame:
    return read_csv_strings(path, "pass the dataset's label file.", skip_initial_space=True)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).lower())


def _find_column(table: pd.DataFrame, names: Sequence[str], source: Path, what: str,
                 required: bool = True) -> str | None:
    """The first header (in order of `names`) that matches, ignoring case, spaces, '_' and '-'."""
    by_norm = {_norm(c): c for c in table.columns}
    for name in names:
        if name in by_norm:
            return by_norm[name]
    if required:
        raise FaceageError(f"{source}: no {what} column; looked for {', '.join(names)} (any case) among "
                           f"{', '.join(map(str, table.columns))}. Rename the column.")
    return None


def _need(table: pd.DataFrame, column: str, source: Path, flag: str | None = None) -> str:
    if column not in table.columns:
        how = f" or name it with {flag}" if flag else ""
        found = ", ".join(map(str, table.columns))
        raise FaceageError(f"{source}: missing column '{column}' (found {found}); fix the header{how}.")
    return column


def _paths(values: pd.Series) -> list[str]:
    return [str(v).strip().replace("\\", "/").removeprefix("./") for v in values]


def _same(value: object, parsed: object) -> bool:
    try:
        return float(str(value)) == float(str(parsed))
    except ValueError:
        return str(value).strip() == str(parsed).strip()


# The adapters by name: the one list `faceage manifest --dataset` accepts.
READERS: dict[str, Callable[[Path, LabelOptions], Labels]] = {
    "morph2": _morph2, "fgnet": _named_reader("fgnet"), "clap2016": _clap2016, "appa-real": _appa_real,
    "utkface": _named_reader("utkface"), "csv": _generic_csv,
}
DATASETS = tuple(READERS)
