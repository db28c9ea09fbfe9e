"""Robust image loading: any common raster file → H×W×3 uint8 RGB, upright, or a typed reason why not.

The file's content decides the format (a PNG named `.jpg` loads), EXIF orientation is applied, and every pixel
mode a camera or editor writes (grayscale, RGBA, palette, CMYK, 16-bit) becomes 8-bit RGB. The pixel count is
checked from the header before anything is decoded, so a decompression bomb costs microseconds, not gigabytes.
Files are only ever opened read-only.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceage.core.errors import FaceageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
# 120 megapixels: a 12000×10000 scan still loads (≈360 MB as RGB); a header claiming more is never decoded.
MAX_PIXELS = 120_000_000
# Raster formats we decode; anything else Pillow could parse (EPS, PSD, ICO, …) is not a photo we expect.
_FORMATS = ("JPEG", "PNG", "BMP", "DIB", "WEBP", "TIFF", "GIF", "AVIF", "JPEG2000", "PPM")
# Image types recognised by their first bytes that we cannot decode: reported as `unsupported`, not garbage.
_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypheic", "HEIC"), (4, b"ftypheix", "HEIC"), (4, b"ftyphevc", "HEIC"),
    (4, b"ftypmif1", "HEIF"), (4, b"ftypmsf1", "HEIF"), (0, b"\xff\x0a", "JPEG XL"), (4, b"JXL ", "JPEG XL"),
    (0, b"8BPS", "Photoshop PSD"), (0, b"%PDF", "PDF"), (0, b"%!PS", "PostScript"),
    (0, b"\xc5\xd0\xd3\xc6", "EPS"),
)

LoadStatus = Literal["unreadable", "too_large", "unsupported"]


class ImageLoadError(Exception):
    """Why an image could not be loaded: `status` is the faces.csv status, the message says what to do."""

    def __init__(self, status: LoadStatus, message: str) -> None:
        super().__init__(message)
        self.status: LoadStatus = status


def is_image_name(name: str) -> bool:
    """True when a file name carries one of the image extensions the align stage walks (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def load_rgb(path: str | os.PathLike[str], max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode `path` to an upright, writable H×W×3 uint8 RGB array; raise ImageLoadError otherwise."""
    path = Path(path)
    try:
        _check_regular(path)
        with path.open("rb") as fh, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(fh, formats=_FORMATS)
            except Image.DecompressionBombError as exc:
                raise ImageLoadError(
                    "too_large", f"{path}: header claims a decompression bomb ({exc}); not decoded. "
                    f"Downscale it below {max_pixels:,} pixels.",
                ) from None
            except UnidentifiedImageError:
                raise _unidentified(path) from None
            width, height = im.size
            if width * height > max_pixels:
                raise ImageLoadError(
                    "too_large",
                    f"{path}: {width}×{height} = {width * height:,} pixels (header) exceeds the "
                    f"{max_pixels:,}-pixel limit; downscale it or it will not be decoded.",
                )
            try:
                im.load()
            except OSError as exc:
                raise _decode_error(path, im.format, exc) from None
            return _to_rgb(_upright(im), path)
    except ImageLoadError:
        raise
    except OSError as exc:  # unreadable file system entry: permissions, vanished file, I/O error
        raise ImageLoadError("unreadable", f"{path}: cannot read the file ({exc}).") from None
    except (ValueError, SyntaxError, EOFError, MemoryError) as exc:  # malformed headers inside Pillow plugins
        raise ImageLoadError("unreadable", f"{path}: corrupt image data ({exc}); re-export it.") from None


def pil_to_rgb(im: Image.Image, name: str = "the image") -> np.ndarray:
    """A Pillow image as load_rgb returns a file's pixels: upright by its EXIF tag, uint8 RGB."""
    return _to_rgb(_upright(im), Path(name))


def _check_regular(path: Path) -> None:
    """Refuse what is not a regular file before opening it: reading a FIFO blocks forever, a device never
    ends. (A link to a regular file is fine.)"""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise ImageLoadError("unreadable", f"{path}: {kind}, not a regular file; it was not opened. "
                             "Remove it or replace it with the image file.")


def _unidentified(path: Path) -> ImageLoadError:
    size = path.stat().st_size
    if size == 0:
        return ImageLoadError("unreadable", f"{path}: empty file (0 bytes); re-copy or remove it.")
    with path.open("rb") as fh:
        head = fh.read(16)
    for offset, magic, kind in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            message = f"{path}: {kind} image, which faceage does not decode; convert it to JPEG or PNG."
            return ImageLoadError("unsupported", message)
    return ImageLoadError(
        "unreadable", f"{path}: not an image (content is no known image format); remove or replace the file."
    )


def _decode_error(path: Path, fmt: str | None, exc: OSError) -> ImageLoadError:
    text = str(exc)
    if "decoder" in text and "not available" in text:
        return ImageLoadError("unsupported", f"{path}: {fmt} variant we cannot decode ({text}); convert it.")
    if "truncated" in text:
        return ImageLoadError("unreadable", f"{path}: truncated {fmt} file ({text}); copy or export again.")
    return ImageLoadError("unreadable", f"{path}: {fmt} decode error ({text}); re-export the file.")


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag; a broken EXIF block leaves the pixels as stored."""
    try:
        return ImageOps.exif_transpose(im) or im
    except Exception:  # a corrupt EXIF block must not make a good image unreadable
        return im


def _to_rgb(im: Image.Image, path: Path) -> np.ndarray:
    """Convert any Pillow mode to uint8 RGB: alpha over white, 16-bit scaled (not clipped) to 8-bit."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ImageLoadError("unsupported", f"{path}: {mode} image with values past 16 bits; convert it.")
        gray = ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    if mode == "F":
        raise ImageLoadError("unsupported", f"{path}: floating-point image; export it as 8- or 16-bit.")
    if mode in ("P", "PA") and ("transparency" in im.info or mode == "PA"):
        im = im.convert("RGBA")
    elif mode in ("LA", "La", "RGBa"):
        im = im.convert("RGBA")
    if im.mode == "RGBA":
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.array(im, dtype=np.uint8)  # a writable copy (Pillow's own buffer view is read-only)


def decode_image(file: Path, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8 RGB (decoded like every stage does: upright, any pixel mode),
    resized with Lanczos when its size differs; FaceageError naming the file when it cannot be decoded."""
    try:
        rgb = load_rgb(file)
    except ImageLoadError as exc:
        raise FaceageError(str(exc)) from exc
    return resize_square(rgb, size)


def resize_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """A uint8 RGB image at `size`×`size` (Lanczos when its size differs, else the array itself): how the
    cache stores an aligned face, and so how predict must resize one."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)
