"""`faceage manifest`: labels joined with the aligned faces, folds per protocol (faceage.manifest)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceage.core.errors import FaceageError

from .options import ALIGN


def manifest_command(
    aligned: Annotated[Path | None, typer.Argument(
        help="Folder written by `faceage align` (with faces.csv); with --pre-aligned, the dataset's own "
             "aligned images. Not needed with --labels-only.", show_default=False,
    )] = None,
    *,
    dataset: Annotated[str, typer.Option(
        "--dataset", "-d", help="morph2, fgnet, clap2016, appa-real, utkface or csv.", show_default=False,
    )],
    protocol: Annotated[str, typer.Option(
        "--protocol", "-p", help="rs, se (subject-exclusive), lopo (one fold per subject) or official.",
        show_default=False,
    )],
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Label file or folder; morph2, fgnet and utkface may omit it (names are parsed).",
    )] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Default: manifests/<dataset>/<protocol>.csv.")] = None,
    folds: Annotated[int, typer.Option("--folds", help="Test folds of rs and se.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the fold and validation draws.")] = 0,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", help="Validation share of each fold's training part (from the next fold); 0: none.",
    )] = 0.1,
    pre_aligned: Annotated[bool, typer.Option(
        "--pre-aligned", help="ALIGNED holds the images at the label paths (no faces.csv).")] = False,
    labels_only: Annotated[bool, typer.Option(
        "--labels-only", help="No images: paths are the names `faceage align` will write.")] = False,
    age: Annotated[str | None, typer.Option("--age", help="appa-real: apparent (default) or real.")] = None,
    skip_malformed: Annotated[bool, typer.Option(
        "--skip-malformed", help="Drop (and list) names that do not match the dataset's pattern.")] = False,
    path_col: Annotated[str, typer.Option("--path-col", help="csv: column of image paths.")] = "path",
    age_col: Annotated[str, typer.Option("--age-col", help="csv: column of ages.")] = "age",
    subject_col: Annotated[str | None, typer.Option("--subject-col", help="csv: subject ids.")] = None,
    std_col: Annotated[str | None, typer.Option("--std-col", help="csv: crowd age std.")] = None,
    split_col: Annotated[str | None, typer.Option("--split-col", help="csv: train/valid/test.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="--labels-only: aligned image format.")] = ALIGN.fmt,
    dropped: Annotated[Path | None, typer.Option(
        "--dropped", help="Also write every dropped row (path, reason, detail) to this CSV.")] = None,
) -> None:
    """Fold manifest of a dataset: labels joined with the aligned faces, folds per evaluation protocol."""
    import faceage.manifest.build as mf
    from faceage.core.layout import default_manifest_path
    from faceage.manifest.datasets import CsvColumns, LabelOptions

    if pre_aligned and labels_only:
        raise FaceageError("--pre-aligned and --labels-only exclude each other; choose one.")
    columns = CsvColumns(path=path_col, age=age_col, subject=subject_col, std=std_col, split=split_col)
    options = LabelOptions(skip_malformed=skip_malformed,
                           age_kind=age,  # type: ignore[arg-type]  # checked by build_manifest
                           columns=columns)
    source: mf.ImageSource = "pre-aligned" if pre_aligned else "labels-only" if labels_only else "faces"
    result = mf.build_manifest(dataset, protocol, aligned, labels=labels, source=source, folds=folds,
                               seed=seed, val_fraction=val_fraction, options=options, fmt=fmt)
    out = out or default_manifest_path(dataset, protocol)
    mf.write_manifest(result, out, dropped)
    mf.print_summary(result.summary, out)
