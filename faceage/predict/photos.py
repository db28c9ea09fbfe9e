"""`faceage predict`: every face in every image → detected → aligned as training's faces were → age ± std.

Alignment reuses the align stage (image loading, detection with its shrink and padded retry, the template
and warp, the minimum face size) with the settings the model records (`options.alignment_for`). Faces are
batched across images for the model. An image that cannot be used gets one row with its status and the
reason; the run always goes on. With `out`, rows go to the file batch by batch (`output.PredictionFile`:
memory flat in the number of photos, resumable); `shard` takes one share of the photos, as align's does.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from faceage.align.detect import Detector, make_detector
from faceage.align.faces import NO_FACE, find_faces
from faceage.align.plan import Shard, in_shard
from faceage.align.settings import AlignSettings
from faceage.core.console import RateColumn, log, progress_bar
from faceage.core.errors import FaceageError
from faceage.core.files import check_no_links_out, list_images, real_path
from faceage.core.imageio import ImageLoadError, load_rgb, resize_square
from faceage.core.lock import folder_lock
from faceage.core.schema import BOX_COLUMNS, FACE_PREDICTIONS, validate
from faceage.predict.draw import Mark, UndrawableError, age_label, draw_targets, save_drawn
from faceage.predict.estimator import preprocess
from faceage.predict.info import Estimator
from faceage.predict.options import PredictOptions, alignment_for, share_cores
from faceage.predict.output import PredictionFile
from faceage.predict.summary import failure_lines

_HELD_PIXELS = 100_000_000  # images kept for drawing while their faces wait for a batch
SHOWN_ROWS = 50  # rows of the table kept for the console when the rows go to a file
SHOWN_FAILURES = 20  # failure lines kept for the console


@dataclass
class PredictResult:
    """What a predict run did. `table` holds every row, or with `out` the first rows only (the file holds
    all); `rows` counts them all, `reused` the photos an earlier run into `out` had predicted already."""

    table: pd.DataFrame
    images: int = 0
    read: int = 0
    rows: int = 0
    reused: int = 0
    failures: list[str] = field(default_factory=list)  # the first SHOWN_FAILURES lines
    failed: int = 0
    drawn: list[Path] = field(default_factory=list)
    draw_error: str | None = None  # why drawing stopped early (the predictions are complete)


def collect_images(inputs: Sequence[Path], skip: Path | None = None) -> dict[Path, str]:
    """Image files given directly (→ their name), and every image file under the folders given (sorted; →
    their path below that folder), without repeats; `skip` is a folder not to walk (the --draw output)."""
    found: dict[Path, str] = {}
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            for rel in list_images(path, skip=real_path(skip) if skip else None):
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
    """An image whose faces wait for the model: its rows, crops, and the pixels when it is to be drawn."""

    path: Path
    read: bool
    image: np.ndarray | None
    rows: list[dict[str, object]]
    crops: list[np.ndarray]


def predict_images(
    estimator: Estimator,
    inputs: Sequence[Path],
    options: PredictOptions = PredictOptions(),  # noqa: B008 - frozen, so a shared default is safe
    draw_dir: Path | None = None,
    progress: bool = True,
    *,
    out: Path | None = None,
    shard: Shard | None = None,
) -> PredictResult:
    """Predict every face in the images under `inputs` (their share `shard`); with `out`, into that file
    (resuming an earlier run into it); with `draw_dir`, write drawn copies there."""
    if options.batch_size < 1:
        raise FaceageError(f"--batch-size {options.batch_size}: give at least 1.")
    found = collect_images(inputs, skip=draw_dir)
    named = {path: rel for path, rel in found.items() if in_shard(rel, shard)}
    if not named:
        raise FaceageError(f"--shard {shard}: none of the {len(found)} images falls in this share of them; "
                           f"give fewer shards, or more images.")
    settings = alignment_for(estimator.info, options)
    result = PredictResult(pd.DataFrame(columns=FACE_PREDICTIONS.names()), images=len(named))
    chunks: list[pd.DataFrame] = []  # every row, when they stay in memory (no `out`)
    with contextlib.ExitStack() as stack:
        file = None
        if out is not None:
            file = stack.enter_context(PredictionFile(out, estimator.info.identity, settings.digest()))
            file.begin(keep={str(path) for path in named})
        if draw_dir is not None:  # one writer: align into the same folder waits its turn
            stack.enter_context(folder_lock(draw_dir, "the drawing folder"))
            check_no_links_out(draw_dir, "the drawing folder")
        todo = [path for path in named if file is None or str(path) not in file.done]
        result.reused = len(named) - len(todo)
        targets = draw_targets({p: named[p] for p in todo}, draw_dir) if draw_dir is not None else {}
        detector = make_detector(settings.detector, settings.model, 1, options.device,  # a thread per call
                                 settings.score_threshold)
        with progress_bar(RateColumn("images"), enabled=progress) as bar:
            task = bar.add_task("predicting", total=len(todo))
            workers = share_cores(options.threads).detect_workers
            side = estimator.info.resize
            located = _ahead(todo, lambda p: _find_faces(detector, p, settings, side, p in targets),
                             depth=max(options.batch_size, 2 * workers), workers=workers)
            for done in _batches(located, options.batch_size):
                _estimate(estimator, done)
                rows = [row for item in done for row in item.rows]
                chunk = pd.DataFrame(rows, columns=FACE_PREDICTIONS.names())  # validated once: file or below
                if file is not None:
                    file.add(chunk)
                else:
                    chunks.append(chunk)
                _tally(result, chunk)
                for item in done:
                    result.read += item.read
                    if item.path in targets and item.image is not None and result.draw_error is None:
                        _draw(item, targets[item.path], result)
                    bar.advance(task)
        if file is not None:
            file.finish()
    if chunks:
        result.table = validate(pd.concat(chunks, ignore_index=True), FACE_PREDICTIONS)
    if result.reused:
        log.info("%d of %d photos were predicted by an earlier run into %s; kept", result.reused, len(named),
                 out)
    return result


def _tally(result: PredictResult, chunk: pd.DataFrame) -> None:
    """Count a batch's rows and failures into `result`, keeping the first rows and lines for the console."""
    kept = chunk.head(max(SHOWN_ROWS - len(result.table), 0))
    if len(kept):
        result.table = kept if result.table.empty else pd.concat([result.table, kept], ignore_index=True)
    lines = failure_lines(chunk)
    result.failures += lines[:max(SHOWN_FAILURES - len(result.failures), 0)]
    result.failed += len(lines)
    result.rows += len(chunk)


def _draw(item: _Pending, target: Path, result: PredictResult) -> None:
    """Write one drawn copy; the first failure (disk full) stops the drawing, not the predictions."""
    try:
        save_drawn(item.image, _marks(item.rows), target)  # type: ignore[arg-type]  # checked by the caller
    except UndrawableError as exc:  # this image only: the others are drawn
        log.warning("%s", exc)
        return
    except FaceageError as exc:
        result.draw_error = f"drawing stopped after {len(result.drawn)} images: {exc}"
        log.warning("%s; the predictions go on", result.draw_error)
        return
    result.drawn.append(target)


def _ahead(paths: list[Path], work: Callable[[Path], _Pending], depth: int, workers: int
           ) -> Iterator[_Pending]:
    """`work` on each path, yielded in order, on `workers` background threads that keep up to `depth`
    images ahead of the caller: decoding and detection run on every core (onnxruntime sessions take calls
    from many threads) and overlap the model's batches instead of waiting for them."""
    with ThreadPoolExecutor(workers, thread_name_prefix="faceage-detect") as pool:
        pending: deque[Future[_Pending]] = deque()
        try:
            for path in paths:
                pending.append(pool.submit(work, path))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def _find_faces(detector: Detector, path: Path, settings: AlignSettings, side: int,
                keep_pixels: bool) -> _Pending:
    """Load one image, find every face, align the faces large enough to use (align's own routine and crop
    side) and resize each crop to the model's `side` as training's cache did, here on the worker's core
    rather than in the model's preprocessing; the pixels are kept only for an image to be drawn."""
    try:
        image = load_rgb(path)
    except ImageLoadError as exc:
        return _Pending(path, False, None, [_row(path, status=exc.status, error=str(exc))], [])
    found = find_faces(detector, image, settings)
    kept = image if keep_pixels else None
    if not found.faces:
        return _Pending(path, True, kept, [_row(path, status="no_face", error=NO_FACE)], [])
    pending = _Pending(path, True, kept, [], [])
    for index, face in enumerate(found.faces):
        cells = {k: v for k, v in face.fields().items() if k in FACE_PREDICTIONS.names()}
        pending.rows.append(_row(path, face=index, status=face.status, error=face.error, **cells))
        if face.crop is not None:
            pending.crops.append(resize_square(face.crop, side))
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
