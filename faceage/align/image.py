"""One image through the align stage: load it, find and align its face (`find_faces`), encode the crop, and
fill the faces.csv row that says what happened."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from faceage.align.detect import Detector
from faceage.align.faces import NO_FACE, find_faces
from faceage.align.settings import AlignSettings
from faceage.core.imageio import ImageLoadError, load_rgb
from faceage.core.schema import FACES

Row = dict[str, object]
Loaded = np.ndarray | ImageLoadError


def empty_row(src: str, settings: AlignSettings, digest: str, src_bytes: int, src_mtime_ns: int) -> Row:
    """A faces.csv row with nothing found yet."""
    row: Row = {name: math.nan for name in FACES.names()}
    row.update(
        src=src, dst="", status="", n_faces=0, detector=settings.detector, settings=digest,
        src_bytes=src_bytes, src_mtime_ns=src_mtime_ns, error="",
    )
    return row


def load_image(path: Path) -> Loaded:
    """The decoded image, or the reason it cannot be used: returned, not raised, so that a prefetching
    thread can hand either over."""
    try:
        return load_rgb(path)
    except ImageLoadError as exc:
        return exc


def align_image(
    detector: Detector, path: Path, row: Row, settings: AlignSettings, dst_rel: str,
    loaded: Loaded | None = None,
) -> tuple[Row, bytes | None]:
    """Fill `row` for the image at `path` (already `loaded`, or loaded now) and return it with the encoded
    crop (None unless status is ok)."""
    image = load_image(path) if loaded is None else loaded
    if isinstance(image, ImageLoadError):
        row.update(status=image.status, error=str(image).replace(str(path), str(row["src"])))
        return row, None
    found = find_faces(detector, image, settings, keep=settings.keep)
    row["n_faces"] = found.count
    if not found.faces:
        row.update(status="no_face", error=NO_FACE)
        return row, None
    face = found.faces[0]
    row.update(face.fields(), status=face.status, error=face.error)
    if face.crop is None:
        return row, None
    row["dst"] = dst_rel
    return row, encode(face.crop, settings.fmt, settings.quality)


def encode(crop: np.ndarray, fmt: str, quality: int) -> bytes:
    """The crop as JPEG (given quality, 4:2:0) or PNG bytes."""
    buffer = io.BytesIO()
    if fmt == "jpg":
        Image.fromarray(crop).save(buffer, format="JPEG", quality=quality)
    else:
        Image.fromarray(crop).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
