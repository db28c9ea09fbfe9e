"""`faceage predict`: the age of every face in photos (faceage.predict), aligned as its model's faces were."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from faceage.core.console import console
from faceage.core.errors import FaceageError
from faceage.predict.options import PredictOptions

from .options import Device, align_option

PREDICT = PredictOptions()  # the library's defaults (None: as the model records)


def predict_command(
    images: Annotated[list[Path], typer.Argument(
        help="Image files and folders (walked recursively).", show_default=False)],
    model: Annotated[Path | None, typer.Option(
        "--model", "-m",
        help="Run folder (its folds' distributions averaged), a fold's best.pt/last.pt, or an exported "
             ".onnx (default: the bundled model, faceage/zoo).",
        show_default=False)] = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Write every row to this .csv or .json, as it goes; a rerun into it keeps the "
                            "photos it holds for the same model and settings and predicts the "
                            "rest.")] = None,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="i/n: predict only share i of n of the photos (by a hash of the path below the "
                        "folder given, as align --shard), e.g. one SLURM array task each; give each its own "
                        "--out.",
        show_default=False)] = None,
    draw: Annotated[Path | None, typer.Option(
        "--draw", help="Folder for copies of the images with each box and 'age ± std' drawn.")] = None,
    fold: Annotated[int | None, typer.Option("--fold", help="Only this fold of a run folder.")] = None,
    detector: Annotated[str | None, align_option("detector", recorded=True)] = None,
    detector_model: Annotated[Path | None, align_option("model", "--detector-model", recorded=True)] = None,
    size: Annotated[int | None, align_option("size", recorded=True)] = None,
    min_face: Annotated[float | None, align_option("min_face", recorded=True)] = None,
    score_threshold: Annotated[float | None, align_option("score_threshold", recorded=True)] = None,
    device: Device = PREDICT.device,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU cores to use: each detects its own photos, and the model runs beside "
                          "them on a quarter of them (at least one thread).",
        show_default="all cores")] = None,
    batch_size: Annotated[int, typer.Option(
        "--batch-size", help="Faces per model call.")] = PREDICT.batch_size,
) -> None:
    """Age ± std of every face in the images: detect, align as training did, predict; failures listed.

    With no --model, the bundled model (trained on UTKFace, MORPH and ChaLearn faces; its card is
    faceage/zoo/README.md) predicts, offline."""
    import os

    from faceage.align.plan import parse_shard
    from faceage.predict.estimator import load_estimator
    from faceage.predict.options import share_cores
    from faceage.predict.output import check_out
    from faceage.predict.photos import predict_images
    from faceage.predict.summary import predictions_table

    if threads is not None and threads < 1:  # 0 is not "the default": say so
        raise FaceageError(f"--threads {threads}: give at least 1 (leave it out for every core).")
    threads = threads if threads is not None else os.cpu_count() or 1
    shares = parse_shard(shard)
    if out is not None:
        check_out(out, images)
    estimator = load_estimator(model, fold=fold, device=device, threads=share_cores(threads).model_threads)
    options = PredictOptions(
        detector=detector, detector_model=None if detector_model is None else str(detector_model), size=size,
        min_face=min_face, score_threshold=score_threshold, threads=threads, device=device,
        batch_size=batch_size)
    result = predict_images(estimator, images, options, draw_dir=draw, out=out, shard=shares)
    console.print(predictions_table(result.table, width=console.width, total=result.rows))
    for line in result.failures:
        console.print(f"[yellow]{escape(line)}[/]", highlight=False)
    if result.failed > len(result.failures):
        console.print(f"[yellow]… and {result.failed - len(result.failures)} more without a prediction"
                      f"{f' (all in {out})' if out else ''}[/]", highlight=False)
    if out is not None:
        kept = f", {result.reused} photos kept from the earlier run" if result.reused else ""
        console.print(f"wrote {escape(str(out))} ({result.images} photos{kept})", highlight=False)
    if draw is not None:
        console.print(f"drew {len(result.drawn)} images into {escape(str(draw))}", highlight=False)
    if result.draw_error is not None:
        raise FaceageError(result.draw_error + (f" The predictions are in {out}." if out else ""))
    if result.read == 0 and result.reused == 0:
        console.print(f"[bold red]none of the {result.images} images could be read[/]", highlight=False)
        raise typer.Exit(1)
