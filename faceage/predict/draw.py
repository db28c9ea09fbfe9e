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
from faceage.core.errors import FaceageError
from faceage.core.layout import output_names

BOX_COLOUR = (255, 64, 32)
TEXT_COLOUR = (255, 255, 255)
JPEG_QUALITY = 92


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
    """Where each image's drawn copy goes under `out_dir`, from its relative name (`collect_images`);
    refuses any target that is one of the inputs."""
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
    inputs = {p.expanduser().resolve() for p in images}
    for source, target in targets.items():
        if target.resolve() in inputs:
            raise FaceageError(f"--draw {out_dir}: the drawn copy of {source} would overwrite the input "
                               f"{target}; choose a --draw folder apart from the images.")
    return targets


def save_drawn(image: np.ndarray, marks: Sequence[Mark], target: Path) -> None:
    """Draw `marks` on a copy of `image` and write it to `target` as JPEG, atomically."""
    buffer = io.BytesIO()
    draw_marks(image, marks).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    write_bytes_atomic(target, buffer.getvalue())
