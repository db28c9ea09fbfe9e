"""What an align run has to do: which images SRC holds, where each one's output goes, which shard it falls
in, and which rows of earlier faces tables can be kept as they are.

Pure bookkeeping over the file system and tables; no pixels are read here.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from faceage.core.errors import FaceageError
from faceage.core.imageio import IMAGE_EXTENSIONS, is_image_name
from faceage.core.layout import aligned_relpath
from faceage.core.schema import FACES, read_csv_strings, validate

TABLE = "faces.csv"
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
    src, dst = src.resolve(), dst.resolve()
    if dst.exists() and not dst.is_dir():
        raise FaceageError(f"{dst}: exists and is not a folder; pass a new or earlier output folder as DST.")
    if dst == src:
        raise FaceageError(f"DST is SRC ({src}); choose a separate output folder for the aligned faces.")
    if src.is_relative_to(dst):
        raise FaceageError(f"SRC {src} lies inside DST {dst}; choose a DST outside the source tree.")
    return src, dst


def list_images(src: Path, skip: Path | None = None) -> list[str]:
    """Relative POSIX paths of every image-extension file under `src`, sorted; `skip` (DST) is not entered.

    Broken links and unreadable entries are listed too: they get an `unreadable` row rather than vanishing.
    Links to folders are followed (a dataset linked into SRC is walked), except into a folder already on the
    current path, which would loop.
    """
    found: list[str] = []
    above: dict[str, frozenset[Path]] = {str(src): frozenset({src.resolve()})}  # real folders up to here
    for root, dirs, files in os.walk(src, followlinks=True):
        root_path = Path(root)
        real = {d: (root_path / d).resolve() for d in dirs}
        dirs[:] = sorted(d for d in dirs if real[d] != skip and real[d] not in above[root])
        above.update({str(root_path / d): above[root] | {real[d]} for d in dirs})
        found.extend(
            (root_path / name).relative_to(src).as_posix()
            for name in files
            if is_image_name(name) and not (root_path / name).is_dir()
        )
    return sorted(found)


def output_names(rels: list[str], fmt: str) -> dict[str, str]:
    """Map each source to its output path, one output per source even when names collide.

    `aligned_relpath` replaces the extension; when two sources map to the same output (`x.jpg`, `x.png`), or
    names differ only in case (they collide on macOS/Windows), the first in sorted order keeps the plain name
    and each later one keeps its own suffix too (`x.png.jpg`), with `~2`, `~3`, … only if that is taken too.
    """
    plain = {rel: aligned_relpath(rel, fmt) for rel in rels}
    taken: set[str] = set()
    claims: dict[str, str] = {}
    for rel in sorted(rels):  # first claim on each plain name, in sorted order
        key = plain[rel].casefold()
        if key not in claims:
            claims[key] = rel
            taken.add(key)
    names: dict[str, str] = {}
    for rel in sorted(rels):
        if claims[plain[rel].casefold()] == rel:
            names[rel] = plain[rel]
            continue
        candidate, n = f"{rel}.{fmt}", 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{PurePosixPath(rel)}~{n}.{fmt}"
        taken.add(candidate.casefold())
        names[rel] = candidate
    return names


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


def table_name(shard: Shard | None) -> str:
    """The table a run writes: faces.csv, or faces.shard-i-of-n.csv so machines never write the same file."""
    return TABLE if shard is None else f"faces.shard-{shard[0]}-of-{shard[1]}.csv"


def read_earlier(dst: Path, own: str) -> dict[str, dict[str, object]]:
    """Rows of every faces table in DST (the run's own table first, then faces.csv, then shard tables).

    For each source the first table that lists it wins; whether the row is still valid is `reusable`'s call.
    """
    if not dst.is_dir():
        return {}
    names = [p.name for p in dst.iterdir() if p.name == TABLE or _SHARD_TABLE.match(p.name)]
    order = sorted(names, key=lambda n: (n != own, n != TABLE, n))
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
