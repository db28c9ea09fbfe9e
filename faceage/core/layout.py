"""Where a stage puts a file, as a pure function shared by every stage that needs to find it again."""

from __future__ import annotations

from pathlib import PurePosixPath

ALIGNED_FORMATS = ("jpg", "png")


def aligned_relpath(src_rel: str, fmt: str = "jpg") -> str:
    """The aligned output's path (POSIX, relative to DST) for a source image's path relative to SRC.

    The source extension is replaced: `a/b/001A02.JPG` → `a/b/001A02.jpg`. Two sources that would collide
    (`x.png` and `x.jpg`) are told apart by the align stage: the later one keeps its suffix (`x.png.jpg`).
    """
    if fmt not in ALIGNED_FORMATS:
        raise ValueError(f"aligned format must be one of {ALIGNED_FORMATS}, not {fmt!r}")
    return str(PurePosixPath(src_rel).with_suffix(f".{fmt}"))
