"""Fold manifests: join a dataset's labels with the aligned faces, assign folds, write the manifest.

`build_manifest` is the `faceage manifest` stage; train and eval read manifests back with
`faceage.manifest.read.read_manifest` (and split one fold with `faceage.manifest.protocols.split_for_fold`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from rich.table import Table

from faceage.core.atomic import atomic_path
from faceage.core.console import console, log
from faceage.core.errors import FaceageError
from faceage.core.files import list_images, read_json_record, real_path
from faceage.core.layout import ALIGN_RECORD, ALIGNED_FORMATS, FACES_CSV, aligned_relpath
from faceage.core.outputs import check_output
from faceage.core.schema import FACES, MANIFEST, MAX_AGE, TableError, read_table, validate
from faceage.core.spreadsheet import escape_cells
from faceage.manifest.datasets import DATASETS, LabelOptions, load_labels
from faceage.manifest.labels import DROPPED_COLUMNS, Labels, dropped_rows
from faceage.manifest.names import NAMED_DATASETS, labels_from_names
from faceage.manifest.protocols import assign_folds

ImageSource = Literal["faces", "pre-aligned", "labels-only"]
IMAGE_SOURCES: tuple[ImageSource, ...] = ("faces", "pre-aligned", "labels-only")
SHOWN_PER_REASON = 10


@dataclass(frozen=True)
class FoldCounts:
    """Size and age range of one test fold (fold -1: rows never tested); `val` counts its validation rows."""

    fold: int
    images: int
    subjects: int
    age_min: float
    age_max: float
    age_mean: float
    val: int


@dataclass(frozen=True)
class ManifestSummary:
    """What the manifest holds per fold, and every row left out with its reason (path, reason, detail)."""

    dataset: str
    protocol: str
    images: int
    subjects: int
    folds: tuple[FoldCounts, ...]
    dropped: pd.DataFrame

    def dropped_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.dropped["reason"].value_counts(sort=False).items()}


@dataclass(frozen=True)
class ManifestResult:
    """The manifest, its summary, and the files it was built from (never to be written over)."""

    manifest: pd.DataFrame
    summary: ManifestSummary
    inputs: tuple[Path, ...] = ()


def build_manifest(dataset: str, protocol: str, aligned: Path | None, *, labels: Path | None = None,
                   source: ImageSource = "faces", folds: int = 5, seed: int = 0, val_fraction: float = 0.1,
                   options: LabelOptions | None = None, fmt: str = "jpg") -> ManifestResult:
    """Labels (from `labels`, or parsed from image names) joined with the aligned images, with folds assigned.

    `source` says where the images are: "faces" — `aligned`/faces.csv from `faceage align` (its `ok` rows);
    "pre-aligned" — `aligned` holds the dataset's own aligned images at the label paths; "labels-only" — no
    images: paths are the names `faceage align` will give (committed manifests such as FG-NET's).
    """
    if dataset not in DATASETS:
        raise FaceageError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}.")
    if source not in IMAGE_SOURCES:
        raise FaceageError(f"image source {source!r}: choose one of {', '.join(IMAGE_SOURCES)}.")
    options = options or LabelOptions()
    options.check(dataset)
    if fmt not in ALIGNED_FORMATS:
        raise FaceageError(f"--format {fmt!r}: choose one of {', '.join(ALIGNED_FORMATS)}.")
    if aligned is None and source != "labels-only":
        raise FaceageError("ALIGNED is required: the folder written by `faceage align` (or, with "
                           "--pre-aligned, the dataset's aligned images); --labels-only needs none.")
    faces = _read_faces(aligned) if source == "faces" else None
    lab = _labels(dataset, labels, aligned, source, faces, options)
    table, dropped = _attach_images(lab.table, aligned, source, faces, fmt)
    outside = (table["age"] < 0) | (table["age"] > MAX_AGE)
    dropped.append(dropped_rows(table.loc[outside, "path"], "age outside 0..100",
                            [f"age {a:g}" for a in table.loc[outside, "age"]]))
    table = table[~outside].reset_index(drop=True)
    repeated = table["path"].duplicated(keep=False)
    dropped.append(dropped_rows(table.loc[repeated, "path"], "duplicate",
                                "two labelled images share this path"))
    table = table[~repeated].reset_index(drop=True)
    if table.empty:
        raise FaceageError(f"no rows left for the manifest ({_counts(dropped)}); check --labels and ALIGNED.")
    folded = assign_folds(table, protocol, folds=folds, seed=seed, val_fraction=val_fraction)
    table = pd.concat([table, folded], axis=1).assign(dataset=dataset, protocol=protocol)
    manifest = table[MANIFEST.names()].sort_values(["fold", "path"], ignore_index=True)
    manifest = validate(manifest, MANIFEST, f"{dataset}/{protocol} manifest")
    drops = pd.concat([lab.dropped, *dropped], ignore_index=True)
    drops = drops[~((drops["reason"] == "no label") & drops["path"].isin(lab.dropped["path"]))]  # told once
    inputs = [p for p in (labels, aligned / FACES_CSV if faces is not None and aligned else None)
              if p is not None and p.is_file()]
    return ManifestResult(manifest, summarize(manifest, drops, dataset, protocol), tuple(inputs))


def write_manifest(result: ManifestResult, out: Path, dropped_out: Path | None = None) -> None:
    """Write the manifest (and, if asked, every dropped row) atomically; empty cells = unknown std/subject.

    Refuses a folder, the same path twice, a file the manifest was read from (faces.csv, the labels), or
    another stage's table (a manifest may replace an earlier manifest).
    """
    check_output(out, "--out", inputs=result.inputs, writes=MANIFEST)
    if dropped_out is not None:
        check_output(dropped_out, "--dropped", inputs=result.inputs)
    if dropped_out is not None and real_path(dropped_out) == real_path(out):
        raise FaceageError(f"--out and --dropped are both {out}; give each its own file.")
    tables = [(result.manifest, out), *([(result.summary.dropped, dropped_out)] if dropped_out else [])]
    with contextlib.ExitStack() as stack:  # both renamed into place only once both are written
        for df, target in tables:
            escape_cells(df).to_csv(stack.enter_context(atomic_path(target)), index=False)


def summarize(manifest: pd.DataFrame, dropped: pd.DataFrame, dataset: str, protocol: str) -> ManifestSummary:
    """Per-fold counts and age range of a built manifest."""
    stats = []
    for k, part in manifest.groupby("fold", sort=True):
        subjects = part["subject"][part["subject"] != ""]
        stats.append(FoldCounts(int(k), len(part), subjects.nunique(), float(part["age"].min()),
                               float(part["age"].max()), float(part["age"].mean()),
                               int((manifest["val_fold"] == k).sum())))
    subjects = manifest["subject"][manifest["subject"] != ""].nunique()
    return ManifestSummary(dataset, protocol, len(manifest), int(subjects), tuple(stats), dropped)


def print_summary(summary: ManifestSummary, out: Path | None = None) -> None:
    """Show the folds and every dropped row by reason (the first few of each reason when many)."""
    title = f"{summary.dataset} / {summary.protocol}: {summary.images} images, {summary.subjects} subjects"
    table = Table("fold", "images", "subjects", "ages", "mean age", "validates it", title=title)
    for s in summary.folds:
        name = "never tested" if s.fold < 0 else str(s.fold)
        table.add_row(name, str(s.images), str(s.subjects), f"{s.age_min:g}–{s.age_max:g}",
                      f"{s.age_mean:.1f}", str(s.val) if s.fold >= 0 else "")
    console.print(table)
    for reason, rows in summary.dropped.groupby("reason", sort=True):
        console.print(f"dropped ({reason}): {len(rows)}", highlight=False)
        for path, detail in rows[["path", "detail"]].head(SHOWN_PER_REASON).itertuples(index=False):
            console.print(f"  {path}" + (f"  [{detail}]" if detail else ""), markup=False, highlight=False)
        if len(rows) > SHOWN_PER_REASON:
            console.print(f"  … and {len(rows) - SHOWN_PER_REASON} more (all of them: --dropped FILE)")
    if out is not None:
        console.print(f"wrote {out}", highlight=False)


def _read_faces(aligned: Path | None) -> pd.DataFrame:
    if aligned is None or not (aligned / FACES_CSV).is_file():
        raise FaceageError(f"{aligned}/{FACES_CSV} not found: run `faceage align RAW {aligned}` first, or "
                           f"pass --pre-aligned if the folder holds images aligned by the dataset authors.")
    faces = read_table(aligned / FACES_CSV, FACES)
    _check_alignment(aligned, faces)
    return faces


def _check_alignment(aligned: Path, faces: pd.DataFrame) -> None:
    """Warn when faces.csv mixes faces aligned with other settings than align.json records (a rerun of
    align with new settings was stopped half way): one manifest would train on two alignments."""
    record = read_json_record(aligned / ALIGN_RECORD, "align the folder again with `faceage align`.")
    if record is None or not isinstance(record.get("digest"), str):
        return
    other = faces["status"].eq("ok") & faces["settings"].ne(record["digest"])
    if other.any():
        log.warning("%s: %d of %d aligned faces were made with other settings than %s records (an align run "
                    "with new settings did not finish); rerun `faceage align` on the same folders to redo "
                    "them",
                    aligned / FACES_CSV, int(other.sum()), int(faces["status"].eq("ok").sum()), ALIGN_RECORD)


def _labels(dataset: str, labels: Path | None, aligned: Path | None, source: ImageSource,
            faces: pd.DataFrame | None, options: LabelOptions) -> Labels:
    """The labels: from --labels, else (name-encoded datasets) from the image names at hand."""
    if labels is not None:
        return load_labels(dataset, labels, options)
    if dataset not in NAMED_DATASETS or source == "labels-only":
        raise FaceageError(f"--dataset {dataset}: pass its label file or folder with --labels.")
    if faces is not None:
        origin = f"{aligned}/{FACES_CSV}"
        names = faces.loc[faces["status"] == "ok", "src"].tolist()  # failed rows are reported by status
        return labels_from_names(dataset, names, origin, options.skip_malformed)
    return labels_from_names(dataset, list_images(Path(str(aligned))), str(aligned), options.skip_malformed)


def _attach_images(labels: pd.DataFrame, aligned: Path | None, source: ImageSource,
                   faces: pd.DataFrame | None, fmt: str) -> tuple[pd.DataFrame, list[pd.DataFrame]]:
    """Replace label paths by aligned image paths; return the rows kept and the drops (by reason)."""
    table = labels.copy()
    if source == "labels-only":
        table["path"] = [aligned_relpath(p, fmt) for p in table["path"]]
        return table, []
    if faces is None:
        missing = np.array([not Path(str(aligned), p).is_file() for p in table["path"]], dtype=bool)
        return table[~missing], [dropped_rows(table.loc[missing, "path"], "missing image",
                                              f"not in {aligned}")]
    ok = faces["status"] == "ok"
    bad_dst = ok & (faces["dst"] == "")
    if bad_dst.any():
        row = int(np.flatnonzero(bad_dst.to_numpy())[0])
        raise TableError(f"{aligned}/{FACES_CSV}, row {row + 2}, column 'dst': empty in an ok row; "
                         f"rerun faceage align.")
    drops = [dropped_rows(faces.loc[~ok, "src"], faces.loc[~ok, "status"], faces.loc[~ok, "error"])]
    labelled = faces["src"].isin(table["path"])
    drops.append(dropped_rows(faces.loc[ok & ~labelled, "src"], "no label", "not in the labels"))
    unaligned = ~table["path"].isin(faces["src"])
    drops.append(dropped_rows(table.loc[unaligned, "path"], "not aligned", f"no row in {FACES_CSV}"))
    joined = table.merge(faces.loc[ok, ["src", "dst"]], left_on="path", right_on="src", how="inner")
    if joined.empty:
        raise FaceageError(
            f"no label path matches a `src` of {aligned}/{FACES_CSV} (labels e.g. "
            f"{table['path'].head(3).tolist()}, faces.csv e.g. {faces['src'].head(3).tolist()}); label paths "
            f"must be relative to the folder given to `faceage align`.")
    joined["path"] = joined["dst"]
    return joined.drop(columns=["src", "dst"]), drops


def _counts(dropped: list[pd.DataFrame]) -> str:
    frame = pd.concat(dropped, ignore_index=True) if dropped else pd.DataFrame(columns=DROPPED_COLUMNS)
    return ", ".join(f"{k}: {v}" for k, v in frame["reason"].value_counts().items()) or "no labels"
