"""The first line of a CSV, read with a bound: a header of millions of columns is refused in microseconds
instead of costing pandas minutes and gigabytes."""

from __future__ import annotations

import csv
import os

from faceage.core.errors import FaceageError

MAX_HEADER_BYTES = 65_536  # faceage's tables have a few dozen columns; a label file a few more


def read_header(path: str | os.PathLike[str]) -> list[str]:
    """The column names of `path`'s first line (stripped); FaceageError naming the file when that line is
    longer than MAX_HEADER_BYTES."""
    with open(path, "rb") as fh:
        line = fh.readline(MAX_HEADER_BYTES + 1)
    if len(line) > MAX_HEADER_BYTES:
        raise FaceageError(f"{path}: the header (first line) is over {MAX_HEADER_BYTES:,} bytes long, which "
                           f"no table faceage reads has; check that this is the right file.")
    text = line.decode("utf-8-sig", errors="replace").rstrip("\r\n")
    return [name.strip() for name in next(csv.reader([text]), [])]
