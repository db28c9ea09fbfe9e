"""`faceage predict`: every face in every image → detected → aligned as training's faces were → age ± std.

Alignment reuses the align stage (image loading, detection with its shrink and padded retry, the template
and warp, the minimum face size); the settings come from the faces.csv of the folder the run trained on
(detector and crop size) unless given. Faces are batched across images for the model. An image that cannot
be used gets one row with its status and the reason; the run always goes on.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from faceage.align.detect import Detector, make_detector
from faceage.align.faces import NO_FACE, find_faces
from faceage.align.settings import AlignSettings
from faceage.core.atomic import OutputError, write_csv_atomic, write_text_atomic
from faceage.core.console import RateColumn, log, progress_bar
from faceage.core.errors import FaceageError
from faceage.core.files import list_images
from faceage.core.imageio import ImageLoadError, load_rgb
from faceage.core.outputs import check_output, check_writable
from faceage.core.schema import BOX_COLUMNS, FACE_PREDICTIONS, validate
from faceage.predict.draw import Mark, age_label, draw_targets, save_drawn
from faceage.predict.estimator import preprocess
from faceage.predict.info import Estimator
from faceage.predict.options import PredictOptions, alignment_for

OUT_FORMATS = (".csv", ".json")
_HELD_PIXELS = 100_000_000  # images kept for drawing while their faces wait for a batch
_BOX_WIDTH = 100  # terminal columns from which the predictions table shows each face's box


@dataclass
class PredictResult:
    """The face table, and how many images were read at all (no_face counts as read)."""

    table: pd.DataFrame
    images: int = 0
    read: int = 0
    drawn: list[Path] = field(default_factory=list)
    draw_error: str | None = None  # why drawing stopped early (the predictions are complete)


def collect_images(inputs: Sequence[Path], skip: Path | None = None) -> dict[Path, str]:
    """Image files given directly (→ their name), and every image file under the folders given (sorted; →
    their path below that folder), without repeats; `skip` is a folder not to walk (the --draw output)."""
    found: dict[Path, str] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for rel in list_images(path, skip=skip.resolve() if skip else None):
                found.setdefault(path / rel, rel)
        elif path.exists() or path.is_symlink():  # a FIFO or broken link gets a row saying why, unopened
            found.setdefault(path, path.name)
        else:
            raise FaceageError(f"{path}: no such file or folder; pass image files or folders of images.")
    if not found:
        raise FaceageError(f"no image files in {', '.join(map(str, inputs))}; pass image files or folders "
                           f"holding .jpg/.png/… images.")
    return found


@dataclass
class _Pending:
    """An image whose faces wait for the model: its rows, crops, and the pixels for drawing."""

    path: Path
    image: np.ndarray | None
    rows: list[dict[str, object]]
    crops: list[np.ndarray]


def predict_images(
    estimator: Estimator,
    inputs: Sequence[Path],
    options: PredictOptions = PredictOptions(),  # noqa: B008 - frozen, so a shared default is safe
    draw_dir: Path | None = None,
    progress: bool = True,
) -> PredictResult:
    """Predict every face in the images under `inputs`; with `draw_dir`, write drawn copies there."""
    if options.batch_size < 1:
        raise FaceageError(f"--batch-size {options.batch_size}: give at least 1.")
    named = collect_images(inputs, skip=draw_dir)
    targets = draw_targets(named, draw_dir) if draw_dir is not None else {}
    images = list(named)
    settings = alignment_for(estimator.info, options)
    detector = make_detector(settings.detector, settings.model, options.threads, options.device,
                             settings.score_threshold)
    result = PredictResult(pd.DataFrame(), images=len(images))
    rows: list[dict[str, object]] = []
    with progress_bar(RateColumn("images"), enabled=progress) as bar:
        task = bar.add_task("predicting", total=len(images))
        for done in _batches((_find_faces(detector, p, settings) for p in images), options.batch_size):
            _estimate(estimator, done)
            for item in done:
                rows.extend(item.rows)
                result.read += item.image is not None
                if item.path in targets and item.image is not None and result.draw_error is None:
                    _draw(item, targets[item.path], result)
                bar.advance(task)
    result.table = validate(pd.DataFrame(rows, columns=FACE_PREDICTIONS.names()), FACE_PREDICTIONS)
    return result


def _draw(item: _Pending, target: Path, result: PredictResult) -> None:
    """Write one drawn copy; the first failure (disk full) stops the drawing, not the predictions."""
    try:
        save_drawn(item.image, _marks(item.rows), target)  # type: ignore[arg-type]  # checked by the caller
    except FaceageError as exc:
        result.draw_error = f"drawing stopped after {len(result.drawn)} images: {exc}"
        log.warning("%s; the predictions go on", result.draw_error)
        return
    result.drawn.append(target)


def _find_faces(detector: Detector, path: Path, settings: AlignSettings) -> _Pending:
    """Load one image, find every face, and align the faces large enough to use (align's own routine)."""
    try:
        image = load_rgb(path)
    except ImageLoadError as exc:
        return _Pending(path, None, [_row(path, status=exc.status, error=str(exc))], [])
    found = find_faces(detector, image, settings)
    if not found.faces:
        return _Pending(path, image, [_row(path, status="no_face", error=NO_FACE)], [])
    pending = _Pending(path, image, [], [])
    for index, face in enumerate(found.faces):
        cells = {k: v for k, v in face.fields().items() if k in FACE_PREDICTIONS.names()}
        pending.rows.append(_row(path, face=index, status=face.status, error=face.error, **cells))
        if face.crop is not None:
            pending.crops.append(face.crop)
    return pending


def _row(path: Path, **values: object) -> dict[str, object]:
    row: dict[str, object] = {name: math.nan for name in FACE_PREDICTIONS.names()}
    row.update(path=str(path), face=None, status="ok", error="")
    row.update(values)
    return row


def _batches(items: Iterator[_Pending], batch_size: int) -> Iterator[list[_Pending]]:
    """Group images until their faces fill a batch (or the held pixels grow large)."""
    group: list[_Pending] = []
    faces = pixels = 0
    for item in items:
        group.append(item)
        faces += len(item.crops)
        pixels += 0 if item.image is None else item.image.shape[0] * item.image.shape[1]
        if faces >= batch_size or pixels >= _HELD_PIXELS:
            yield group
            group, faces, pixels = [], 0, 0
    if group:
        yield group


def _estimate(estimator: Estimator, group: list[_Pending]) -> None:
    """Run the model on every aligned crop of the group and write pred, mean, std into the ok rows."""
    crops = [crop for item in group for crop in item.crops]
    if not crops:
        return
    ages = estimator.estimate(preprocess(crops, estimator.info))
    ok_rows = [row for item in group for row in item.rows if row["status"] == "ok"]
    for i, row in enumerate(ok_rows):
        row.update(pred=float(ages.pred[i]), mean=round(float(ages.mean[i]), 4),
                   std=round(float(ages.std[i]), 4))


def _marks(rows: list[dict[str, object]]) -> list[Mark]:
    """What to draw for an image's rows: every face's box, labelled with its age or why there is none."""
    marks = []
    for row in rows:
        if row["face"] is None:
            continue
        x1, y1, x2, y2 = (float(str(row[c])) for c in BOX_COLUMNS)
        ok = row["status"] == "ok"
        label = age_label(float(str(row["pred"])), float(str(row["std"]))) if ok else str(row["status"])
        marks.append(Mark((x1, y1, x2, y2), label))
    return marks


def check_out(out: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse, before any work, an output whose format is unknown, that is an input or another stage's
    table, or that cannot be created (so no prediction is computed in vain)."""
    if out.suffix.lower() not in OUT_FORMATS:
        raise FaceageError(f"--out {out}: write .csv or .json (the suffix decides).")
    check_output(out, "--out", inputs=inputs, writes=FACE_PREDICTIONS)
    check_writable(out, "--out")


def write_predictions(table: pd.DataFrame, out: Path) -> None:
    """The face table as CSV or JSON (a list of objects, null for missing values), atomically. When `out`
    cannot be written (the disk filled up while predicting), the table goes to the temporary folder instead
    and the error says where, so no computed prediction is lost."""
    try:
        _write_table(table, out)
    except OutputError as exc:
        fallback = Path(tempfile.gettempdir()) / f"faceage-predictions-{os.getpid()}{out.suffix.lower()}"
        try:
            _write_table(table, fallback)
        except OutputError:
            raise exc from None
        raise FaceageError(f"{exc} The predictions were saved to {fallback} instead.") from exc


def _write_table(table: pd.DataFrame, out: Path) -> None:
    if out.suffix.lower() not in OUT_FORMATS:
        raise FaceageError(f"--out {out}: write .csv or .json (the suffix decides).")
    if out.suffix.lower() == ".csv":
        write_csv_atomic(table, out)
        return
    records = json.loads(table.to_json(orient="records"))
    write_text_atomic(out, json.dumps(records, indent=1, ensure_ascii=False) + "\n")


def predictions_table(table: pd.DataFrame, limit: int = 50, width: int = 80) -> Table:
    """The faces as a rich table (the first `limit` rows; the files hold all; reasons in `failures`) that
    stays readable in `width` columns: paths below the folder all the photos share (named in the title),
    and the box only where there is room for it."""
    rows = table.head(limit)
    folder = _shared_folder([str(p) for p in rows["path"]])
    title = f"{len(table)} rows" + (f" (first {limit})" if len(table) > limit else "")
    named = min(folder, os.path.relpath(folder), key=len) if folder else ""  # the shorter way to say it
    shown = Table(title=title + (f" in {named}" if folder else ""), title_justify="left")
    columns = ["path", "face", "age", "mean ± std", "score", *(["box"] if width >= _BOX_WIDTH else []),
               "status"]
    for name in columns:
        shown.add_column(name, justify="left" if name in ("path", "status") else "right",
                         overflow="fold" if name == "path" else "ellipsis", no_wrap=name != "path")
    for row in rows.itertuples(index=False):
        ok = row.status == "ok"
        cells = [os.path.relpath(row.path, folder) if folder else str(row.path),
                 "" if pd.isna(row.face) else str(row.face), f"{row.pred:.0f}" if ok else "",
                 f"{row.mean:.1f} ± {row.std:.1f}" if ok else "",
                 "" if pd.isna(row.score) else f"{row.score:.3f}"]
        if "box" in columns:
            cells.append("" if pd.isna(row.box_x1) else ",".join(f"{v:.0f}" for v in row[4:8]))
        shown.add_row(*cells, row.status, style=None if ok else "yellow")
    return shown


def _shared_folder(paths: list[str]) -> str:
    """The folder every one of `paths` lies in ("" when they share none, or it is the working directory)."""
    if not paths:
        return ""
    try:
        common = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return ""
    return "" if common in ("", ".") else common


def failures(table: pd.DataFrame) -> list[str]:
    """One line per row without a prediction: the reason (which names the file)."""
    bad = table[table["status"] != "ok"]
    return [f"{row.status}: {row.error if str(row.path) in str(row.error) else f'{row.path}: {row.error}'}"
            for row in bad.itertuples(index=False)]
