"""Commands that prepare data: align, manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from faceage.cli.app import app
from faceage.core.console import console
from faceage.core.errors import FaceageError


@app.command("align")
def align_command(
    src: Annotated[Path, typer.Argument(help="Folder of images, walked recursively (never modified).")],
    dst: Annotated[Path, typer.Argument(help="Output folder: DST/<relative path>.jpg and DST/faces.csv.")],
    detector: Annotated[str, typer.Option(
        "--detector", help="retinaface (bundled, offline) or insightface (SCRFD, needs --model).",
    )] = "retinaface",
    model: Annotated[Path | None, typer.Option(
        "--model", help="Detector ONNX file, or an insightface model-pack folder.")] = None,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-j", help="Worker processes, one detector thread each.", show_default="all cores",
    )] = None,
    fmt: Annotated[str, typer.Option("--format", help="Output format: jpg or png.")] = "jpg",
    size: Annotated[int, typer.Option("--size", help="Side of the square aligned crop, px.")] = 256,
    keep: Annotated[str, typer.Option(
        "--keep", help="Face kept when there are several: largest (box area) or best (score).")] = "largest",
    min_face: Annotated[float, typer.Option(
        "--min-face", help="A kept face whose box's shorter side is below this (source px) is too_small.",
    )] = 32.0,
    score_threshold: Annotated[float, typer.Option(
        "--score-threshold", help="Detector confidence a face needs, 0..1.")] = 0.5,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="i/n: align only share i of n (by a hash of the path), into faces.shard-i-of-n.csv; "
        "a later run without --shard merges the shards into faces.csv.")] = None,
    quality: Annotated[int, typer.Option("--quality", help="JPEG quality, 1..100.")] = 95,
) -> None:
    """Detect five landmarks, align each image's face to a square crop, and list every image in faces.csv."""
    from faceage.align.plan import parse_shard
    from faceage.align.run import AlignInterruptedError, align_folder, summary_table
    from faceage.align.settings import AlignSettings

    settings = AlignSettings(detector, None if model is None else str(model), size, fmt, quality,
                             keep, min_face, score_threshold)  # type: ignore[arg-type]
    try:
        summary = align_folder(src, dst, settings, workers=workers, shard=parse_shard(shard))
    except AlignInterruptedError as exc:
        console.print(summary_table(exc.summary))
        console.print(f"[yellow]interrupted; {escape(str(exc.summary.table))} lists every crop written. "
                      "Run the same command again to resume.[/]", highlight=False)
        raise typer.Exit(130) from None
    console.print(summary_table(summary))


@app.command("manifest")
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
    fmt: Annotated[str, typer.Option("--format", help="--labels-only: aligned image format.")] = "jpg",
    dropped: Annotated[Path | None, typer.Option(
        "--dropped", help="Also write every dropped row (path, reason, detail) to this CSV.")] = None,
) -> None:
    """Fold manifest of a dataset: labels joined with the aligned faces, folds per evaluation protocol."""
    import faceage.manifest.build as mf
    from faceage.core.layout import default_manifest_path
    from faceage.manifest.datasets import CsvColumns, LabelOptions

    if pre_aligned and labels_only:
        raise FaceageError("--pre-aligned and --labels-only exclude each other; choose one.")
    options = LabelOptions(skip_malformed, age,  # type: ignore[arg-type]  # checked by build_manifest
                           CsvColumns(path_col, age_col, subject_col, std_col, split_col))
    source: mf.ImageSource = "pre-aligned" if pre_aligned else "labels-only" if labels_only else "faces"
    result = mf.build_manifest(dataset, protocol, aligned, labels=labels, source=source, folds=folds,
                               seed=seed, val_fraction=val_fraction, options=options, fmt=fmt)
    out = out or default_manifest_path(dataset, protocol)
    mf.write_manifest(result, out, dropped)
    mf.print_summary(result.summary, out)
