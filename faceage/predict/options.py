"""The options of predict, and how it aligns new photos: as the model's training faces were aligned, read
from what the earlier stages recorded (never guessed from the crops), then overridden by the options given.

Where it comes from, first found wins: the model's own record (a checkpoint's `alignment`, an exported
file's metadata), the align.json of the folder the run trained on, and, for folders aligned before
align.json existed, the detector of faces.csv and the side of its first crop; else align's defaults.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

from PIL import Image

from faceage.align.detect import DETECTORS
from faceage.align.record import read_align_record, settings_from_record
from faceage.align.settings import AlignSettings
from faceage.core.console import log
from faceage.core.layout import ALIGN_RECORD, FACES_CSV
from faceage.predict.info import ModelInfo


@dataclass(frozen=True)
class PredictOptions:
    """How faces are found and batched; None takes what the model records about its training faces (the
    alignment), else align's defaults."""

    detector: str | None = None
    detector_model: str | None = None
    size: int | None = None
    min_face: float | None = None
    score_threshold: float | None = None
    threads: int = 1  # cores for detection and the model (`share_cores`)
    device: str = "auto"
    batch_size: int = 32


class CoreShare(NamedTuple):
    """How predict spends its cores (`share_cores`)."""

    detect_workers: int  # threads that each decode a photo, detect its faces (one-thread session) and warp
    model_threads: int  # the age model's threads, running beside the detection workers


def share_cores(total: int) -> CoreShare:
    """Predict's use of `total` cores: detection scales far better across photos than inside one (2-core
    CPU, `benchmarks/predict_throughput.py`: two one-thread detections 397 faces/s, one two-thread
    detection 286), so each core detects its own photos; the model, a smaller part of a face's work,
    runs beside them on a quarter of the cores (at least one thread)."""
    return CoreShare(detect_workers=total, model_threads=max(1, total // 4))


def alignment_for(info: ModelInfo, options: PredictOptions) -> AlignSettings:
    """The align settings training's faces were made with, overridden by the `options` given."""
    recorded = recorded_alignment(info)
    settings = replace(
        recorded, detector=options.detector or recorded.detector,
        model=options.detector_model if options.detector_model is not None else recorded.model,
        size=recorded.size if options.size is None else options.size,  # 0 is refused by check(), not ignored
        score_threshold=(recorded.score_threshold if options.score_threshold is None
                         else options.score_threshold),
        min_face=recorded.min_face if options.min_face is None else options.min_face, device=options.device)
    if options.detector and options.detector != recorded.detector and options.detector_model is None:
        settings = replace(settings, model=None)  # the recorded file belongs to the recorded detector
    settings.check()
    return settings


def recorded_alignment(info: ModelInfo) -> AlignSettings:
    """The settings the model's training faces were aligned with (see the module's docstring)."""
    if info.alignment is not None:
        log.info("aligning as %s records: %s", Path(info.source).name, _described(info.alignment))
        return info.alignment
    folder = Path(info.aligned) if info.aligned else None
    record = read_align_record(folder) if folder is not None and folder.is_dir() else None
    if folder is not None and record is not None:
        settings = settings_from_record(record, str(folder / ALIGN_RECORD))
        log.info("aligning as %s records: %s", folder / ALIGN_RECORD, _described(settings))
        return settings
    return _from_faces_table(folder)


def _from_faces_table(folder: Path | None) -> AlignSettings:
    """Detector and crop side of a folder aligned before align.json existed (faces.csv and its first crop);
    align's defaults for the rest, and for everything when there is no such folder."""
    from faceage.core.schema import FACES, read_table  # here: it loads pandas, which the CLI's start spares

    default = AlignSettings()
    faces_csv = folder / FACES_CSV if folder is not None else None
    if faces_csv is None or not faces_csv.is_file():
        log.info("%s not found: aligning with align's defaults", faces_csv or "the run's faces.csv")
        return default
    ok = read_table(faces_csv, FACES).query("status == 'ok'")
    try:
        with Image.open(faces_csv.parent / str(ok["dst"].iloc[0])) as first:
            size = first.size[0]
    except (IndexError, OSError) as exc:
        log.info("%s: no readable aligned face (%s); aligning with align's defaults", faces_csv, exc)
        return default
    detector = str(ok["detector"].iloc[0])
    if detector not in DETECTORS:  # a hand-made table: keep the default detector
        detector = default.detector
    log.info("aligning as %s did (it has no %s): %s detector, %d px", faces_csv, ALIGN_RECORD, detector, size)
    return replace(default, size=size, detector=detector)


def _described(settings: AlignSettings) -> str:
    return (f"{settings.detector} detector, {settings.size} px, min face {settings.min_face:g} px, score "
            f"≥ {settings.score_threshold:g}")
