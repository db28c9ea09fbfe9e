"""Image loading: every awkward file becomes upright RGB uint8, or fails with the status a user should see."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceage.core.imageio import ImageLoadError, is_image_name, load_rgb


def _status(path: Path, **kwargs: int) -> str:
    with pytest.raises(ImageLoadError) as info:
        load_rgb(path, **kwargs)
    assert str(path) in str(info.value)  # the message names the file
    return info.value.status


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width×height but whose data holds a few bytes (a decompression-bomb file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(16))) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.mark.parametrize(
    "name, size",
    [
        ("ok_plain.jpg", (240, 200)),
        ("gray.png", (240, 200)),
        ("rgba.png", (240, 200)),
        ("cmyk.jpg", (240, 200)),
        ("sixteen_bit.png", (240, 200)),
        ("palette.gif", (240, 200)),
        ("tiff_face.tif", (240, 200)),
        ("png_named.jpg", (240, 200)),
        ("nested/deeper/again/face.webp", (480, 400)),
        ("upper case/WITH SPACE é.JPEG", (240, 200)),
        # stored 240 wide × 200 high with EXIF orientation 6 (rotate 90°): upright it is 200 × 240
        ("exif_rotated.jpg", (240, 200)),
    ],
)
def test_awkward_images_load_as_upright_rgb(bad_inputs_dir: Path, name: str, size: tuple[int, int]) -> None:
    image = load_rgb(bad_inputs_dir / name)
    assert image.dtype == np.uint8 and image.shape == (*size, 3)
    assert image.flags["C_CONTIGUOUS"] and image.flags["WRITEABLE"]
    assert 40 < image.mean() < 220  # a photo, not a black or white page


def test_exif_rotation_is_applied(bad_inputs_dir: Path) -> None:
    with Image.open(bad_inputs_dir / "exif_rotated.jpg") as raw:
        stored = np.asarray(raw.convert("RGB"))
    upright = load_rgb(bad_inputs_dir / "exif_rotated.jpg")
    assert stored.shape[:2] == (200, 240)
    # orientation 6 means "rotate 90° clockwise to display": the upright image is the stored one turned
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-1))


def test_sixteen_bit_is_scaled_not_clipped(bad_inputs_dir: Path, tmp_path: Path) -> None:
    with Image.open(bad_inputs_dir / "sixteen_bit.png") as raw:
        deep = np.asarray(raw).astype(np.float64)
    image = load_rgb(bad_inputs_dir / "sixteen_bit.png")
    assert deep.max() > 255  # really 16-bit data
    np.testing.assert_array_equal(image[:, :, 0], np.round(deep / 257).astype(np.uint8))
    ramp = np.array([[0, 257 * 100, 65535, 128]], dtype=np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    assert load_rgb(tmp_path / "ramp.png")[0, :, 1].tolist() == [0, 100, 255, 0]


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (10, 20, 30, 255)  # opaque
    rgba[0, 1] = (10, 20, 30, 0)  # fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = load_rgb(tmp_path / "a.png")
    assert image[0, 0].tolist() == [10, 20, 30]
    assert image[0, 1].tolist() == [255, 255, 255]


@pytest.mark.parametrize(
    "name, status",
    [
        ("zero_bytes.jpg", "unreadable"),
        ("text_file.jpg", "unreadable"),
        ("garbage.png", "unreadable"),
        ("truncated.jpg", "unreadable"),
        ("bomb.png", "too_large"),
    ],
)
def test_broken_files_get_a_status(bad_inputs_dir: Path, name: str, status: str) -> None:
    assert _status(bad_inputs_dir / name) == status


def test_pixel_limit_is_read_from_the_header_before_decoding(tmp_path: Path, bad_inputs_dir: Path) -> None:
    # 11000×11000 = 121 Mpx: over our 120 Mpx limit, under Pillow's own bomb error; the file has no pixel
    # data at all, so decoding it would fail as unreadable: too_large proves nothing was decoded.
    assert _status(_png_header_only(tmp_path / "big.png", 11000, 11000)) == "too_large"
    assert _status(_png_header_only(tmp_path / "ok.png", 100, 100)) == "unreadable"
    assert _status(bad_inputs_dir / "ok_plain.jpg", max_pixels=200 * 239) == "too_large"
    assert load_rgb(bad_inputs_dir / "ok_plain.jpg", max_pixels=200 * 240).shape == (240, 200, 3)


def test_known_but_undecodable_formats_are_unsupported(tmp_path: Path) -> None:
    heic = tmp_path / "photo.jpg"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    assert _status(heic) == "unsupported"
    psd = tmp_path / "layers.png"
    psd.write_bytes(b"8BPS\x00\x01" + bytes(64))
    assert _status(psd) == "unsupported"


def test_image_names_are_matched_case_insensitively() -> None:
    for name in ("a.jpg", "b.JPEG", "c.Png", "d.bmp", "e.webp", "f.TIF", "g.tiff", "h.gif"):
        assert is_image_name(name), name
    for name in ("notes.txt", "EXPECTED.tsv", "jpg", "archive.jpg.zip"):
        assert not is_image_name(name), name
