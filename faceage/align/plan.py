"""What an align run has to do: which images SRC holds, where each one's output goes, which shard it falls
in, and which rows of earlier faces tables can be kept as they are.

Pure bookkeeping over the file system and tables; no pixels are read here.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from faceage.core.errors import FaceageError
from faceage.core.files import is_aligned_folder, real_path
from faceage.core.imageio import IMAGE_EXTENSIONS
from faceage.core.layout import FACES_CSV
from faceage.core.schema import FACES, read_csv_strings, validate

_SHARD_TABLE = re.compile(r"^faces\.shard-(\d+)-of-(\d+)\.csv$")

Shard = tuple[int, int]


@dataclass(frozen=True)
class Job:
    """One source image to align: its path relative to SRC, its output relative to DST, and its stat."""

    src: str
    dst: str
    src_bytes: int
    src_mtime_ns: int


def check_folders(src: Path, dst: Path) -> tuple[Path, Path]:
    """Resolve SRC and DST and refuse layouts that would read our own outputs or write over the inputs."""
    if not src.exists():
        raise FaceageError(f"{src}: no such folder; pass the folder of images to align as SRC.")
    if not src.is_dir():
        raise FaceageError(f"{src}: not a folder; SRC must be a folder of images (walked recursively).")
    src, dst = real_path(src), real_path(dst)
    if dst.exists() and not dst.is_dir():
        raise FaceageError(f"{dst}: exists and is not a folder; pass a new or earlier output folder as DST.")
    if dst == src:
        raise FaceageError(f"DST is SRC ({src}); choose a separate output folder for the aligned faces.")
    if src.is_relative_to(dst):
        raise FaceageError(f"SRC {src} lies inside DST {dst}; choose a DST outside the source tree.")
    if is_aligned_folder(src):
        raise FaceageError(f"SRC {src} holds faceage's {FACES_CSV}: it is an aligned folder (its crops are "
                           "outputs); pass the folder of raw photos that was aligned into it.")
    return src, dst


def parse_shard(text: str | None) -> Shard | None:
    """`"i/n"` → (i, n) with 0 ≤ i < n; None stays None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise FaceageError(f"--shard {text!r}: write i/n with 0 ≤ i < n, e.g. 0/4 … 3/4 for four machines.")
    return int(match[1]), int(match[2])


def in_shard(rel: str, shard: Shard | None) -> bool:
    """Whether a source belongs to `shard`: a stable hash of its relative path, modulo n.

    The hash (BLAKE2b of the UTF-8 path) depends on nothing but the path, so every machine agrees without
    seeing the others' files, and adding images to SRC later never moves an image to another shard.
    """
    if shard is None:
        return True
    digest = hashlib.blake2b(rel.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shard[1] == shard[0]


def read_earlier(dst: Path, own: str) -> dict[str, dict[str, object]]:
    """Rows of every faces table in DST (the run's own table first, then faces.csv, then shard tables).

    For each source the first table that lists it wins; whether the row is still valid is `reusable`'s call.
    """
    if not dst.is_dir():
        return {}
    names = [p.name for p in dst.iterdir() if p.name == FACES_CSV or _SHARD_TABLE.match(p.name)]
    order = sorted(names, key=lambda n: (n != own, n != FACES_CSV, n))
    rows: dict[str, dict[str, object]] = {}
    for name in order:
        for row in _read(dst / name):
            rows.setdefault(str(row["src"]), row)
    return rows


def _read(path: Path) -> list[dict[str, object]]:
    df = read_csv_strings(path, "move it aside to realign from scratch.", empty_ok=True)
    if df.empty:
        return []
    return validate(df, FACES, str(path)).to_dict("records")


def reusable(row: dict[str, object] | None, job: Job, settings: str, dst: Path) -> bool:
    """An earlier row still stands: same settings, same source bytes and time, and its output exists."""
    if row is None:
        return False
    same = (
        row["settings"] == settings
        and int(row["src_bytes"]) == job.src_bytes  # type: ignore[call-overload]
        and int(row["src_mtime_ns"]) == job.src_mtime_ns  # type: ignore[call-overload]
    )
    if not same:
        return False
    return row["status"] != "ok" or (row["dst"] == job.dst and (dst / job.dst).is_file())


def make_jobs(src: Path, rels: list[str], names: dict[str, str]) -> list[Job]:
    """Stat each source once; the size and time decide later whether its row can be reused."""
    jobs = []
    for rel in rels:
        try:
            st = (src / rel).stat()
        except OSError:  # a broken link: its own stat, and loading it will say what is wrong
            st = (src / rel).lstat()
        jobs.append(Job(rel, names[rel], st.st_size, st.st_mtime_ns))
    return jobs


def no_images(src: Path) -> FaceageError:
    """The error for a SRC without a single image file."""
    return FaceageError(
        f"{src}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} in any case, recursively); "
        "check the folder."
    )
