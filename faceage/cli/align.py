"""`faceage align SRC DST`: detect, align and list every image of a folder tree (faceage.align)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from faceage.core.console import console

from .options import ALIGN, Device, Workers, align_option


def align_command(
    src: Annotated[Path, typer.Argument(help="Folder of images, walked recursively (never modified).")],
    dst: Annotated[Path, typer.Argument(help="Output folder: DST/<relative path>.jpg and DST/faces.csv.")],
    detector: Annotated[str, align_option("detector")] = ALIGN.detector,
    model: Annotated[Path | None, align_option("model")] = None,
    workers: Workers = None,
    fmt: Annotated[str, align_option("fmt", "--format")] = ALIGN.fmt,
    size: Annotated[int, align_option("size")] = ALIGN.size,
    keep: Annotated[str, align_option("keep")] = ALIGN.keep,
    min_face: Annotated[float, align_option("min_face")] = ALIGN.min_face,
    score_threshold: Annotated[float, align_option("score_threshold")] = ALIGN.score_threshold,
    device: Device = ALIGN.device,
    shard: Annotated[str | None, typer.Option(
        "--shard", help="i/n: align only share i of n (by a hash of the path), into faces.shard-i-of-n.csv; "
        "a later run without --shard merges the shards into faces.csv.")] = None,
    quality: Annotated[int, align_option("quality")] = ALIGN.quality,
) -> None:
    """Detect five landmarks, align each image's face to a square crop, and list every image in faces.csv."""
    from faceage.align.plan import parse_shard
    from faceage.align.run import align_folder, summary_table
    from faceage.align.settings import AlignSettings

    settings = AlignSettings(
        detector=detector, model=None if model is None else str(model), size=size, fmt=fmt, quality=quality,
        keep=keep,  # type: ignore[arg-type]  # checked by AlignSettings.check
        min_face=min_face, score_threshold=score_threshold, device=device)
    console.print(summary_table(align_folder(src, dst, settings, workers=workers, shard=parse_shard(shard))))
