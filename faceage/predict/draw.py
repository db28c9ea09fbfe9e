"""Copies of the input photos with each face's box and "age ± std" drawn on them (the inputs stay untouched).

Drawn files go under one folder, named by the image's path below the folder given (a file given: its name),
with the extension replaced by .jpg (align's collision rule: `x.png` next to `x.jpg` becomes `x.png.jpg`;
the same name under two inputs: `x~2.jpg`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from faceage.core.atomic import write_bytes_atomic
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.files import is_aligned_folder, real_path
from faceage.core.layout import FACES_CSV, output_names

BOX_COLOUR = (255, 64, 32)
TEXT_COLOUR = (255, 255, 255)
JPEG_QUALITY = 92
DRAWN_MARK = b"drawn by faceage predict"  # the JPEG comment that tells a drawn copy from anyone else's file


@dataclass(frozen=True)
class Mark:
    """One face to draw: its box (x1, y1, x2, y2, image pixels) and its label."""

    box: tuple[float, float, float, float]
    label: str


def age_label(pred: float, std: float) -> str:
    """The text drawn above a face: rounded age ± std in years."""
    return f"{pred:.0f} ± {std:.1f}"


def draw_marks(image: np.ndarray, marks: Sequence[Mark]) -> Image.Image:
    """A copy of the RGB `image` with every box outlined and its label on a filled strip above it."""
    canvas = Image.fromarray(image).copy()
    draw = ImageDraw.Draw(canvas)
    side = min(canvas.size)
    width = max(2, round(side / 150))
    font = ImageFont.load_default(size=max(12, round(side / 25)))
    for mark in marks:
        x1, y1, x2, y2 = (float(v) for v in mark.box)
        draw.rectangle((x1, y1, x2, y2), outline=BOX_COLOUR, width=width)
        left, top, right, bottom = draw.textbbox((0, 0), mark.label, font=font)
        text_w, text_h = right - left, bottom - top
        pad = max(2, width)
        # above the box when there is room, else inside its top edge
        y0 = y1 - text_h - 2 * pad if y1 - text_h - 2 * pad >= 0 else y1
        draw.rectangle((x1, y0, x1 + text_w + 2 * pad, y0 + text_h + 2 * pad), fill=BOX_COLOUR)
        draw.text((x1 + pad - left, y0 + pad - top), mark.label, fill=TEXT_COLOUR, font=font)
    return canvas


def draw_targets(images: dict[Path, str], out_dir: Path) -> dict[Path, Path]:
    """Where each image's drawn copy goes under `out_dir`, from its relative name (`collect_images`).

    Refuses a target that is one of the inputs, and an `out_dir` inside an aligned folder (its crops would
    be mixed with drawings); a file there that faceage did not draw is never replaced: its copy takes the
    next free name (`x~2.jpg`), and a note says so.
    """
    for folder in (real_path(out_dir), *real_path(out_dir).parents):
        if is_aligned_folder(folder):
            raise FaceageError(f"--draw {out_dir}: {folder} is an aligned folder (it holds faceage's "
                               f"{FACES_CSV}); drawn copies there would pass for crops. Choose another one.")
    rels: dict[str, Path] = {}
    taken: set[str] = set()  # casefolded names in rels (one set: a lookup per image, not a rebuild)
    for image, rel in images.items():
        name, n = rel, 1
        while name.casefold() in taken:  # the same name under two inputs
            n += 1
            path = PurePosixPath(rel)
            name = str(path.with_name(f"{path.stem}~{n}{path.suffix}"))
        rels[name] = image
        taken.add(name.casefold())
    targets = {rels[rel]: out_dir / name for rel, name in output_names(list(rels), "jpg").items()}
    inputs = {real_path(p.expanduser()) for p in images}
    for source, target in targets.items():
        if real_path(target) in inputs:
            raise FaceageError(f"--draw {out_dir}: the drawn copy of {source} would overwrite the input "
                               f"{target}; choose a --draw folder apart from the images.")
    return _around_foreign_files(targets, out_dir)


def _around_foreign_files(targets: dict[Path, Path], out_dir: Path) -> dict[Path, Path]:
    """Move every target that would replace a file faceage did not draw to the next free name."""
    taken = {t.as_posix().casefold() for t in targets.values()}
    moved: list[str] = []
    for source, target in targets.items():
        if not (target.exists() or target.is_symlink()) or is_drawn(target):
            continue
        n = 2
        while (candidate := target.with_name(f"{target.stem}~{n}{target.suffix}")).exists() or \
                candidate.as_posix().casefold() in taken:
            n += 1
        taken.add(candidate.as_posix().casefold())
        targets[source] = candidate
        moved.append(f"{target.name} → {candidate.name}")
    if moved:
        log.warning("--draw %s: %d files there were not drawn by faceage and stay as they are; their drawn "
                    "copies take free names (%s%s)", out_dir, len(moved), ", ".join(moved[:3]),
                    ", …" if len(moved) > 3 else "")
    return targets


def is_drawn(path: Path) -> bool:
    """Whether `path` is a copy `save_drawn` wrote (its JPEG comment says so), which a rerun may replace."""
    try:
        with Image.open(path) as image:
            return image.info.get("comment") == DRAWN_MARK
    except (OSError, ValueError):
        return False


class UndrawableError(FaceageError):
    """This one image cannot be drawn (JPEG has no room for its size); the others can."""


def save_drawn(image: np.ndarray, marks: Sequence[Mark], target: Path) -> None:
    """Draw `marks` on a copy of `image` and write it to `target` as JPEG, atomically; UndrawableError for an
    image that cannot be encoded (over 65,500 px a side), OutputError when the file cannot be written."""
    buffer = io.BytesIO()
    try:
        draw_marks(image, marks).save(buffer, format="JPEG", quality=JPEG_QUALITY, comment=DRAWN_MARK)
    except (OSError, ValueError) as exc:  # raised in memory, by the encoder: nothing to do with the disk
        raise UndrawableError(f"{target}: not drawn ({exc}); the image's other outputs are complete."
                              ) from exc
    write_bytes_atomic(target, buffer.getvalue())
