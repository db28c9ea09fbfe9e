"""Where each stage puts its files: the names and default places that more than one stage must agree on.

```
aligned/faces.csv                      align writes; manifest and predict read (FACES_CSV)
aligned/align.json                     align writes its settings; manifest, train, predict read (ALIGN_RECORD)
aligned/faces.shard-i-of-n.csv         align --shard writes; align merges (shard_table)
aligned/<src with .jpg>                align writes; manifest lists (aligned_relpath, output_names)
manifests/<dataset>/<protocol>.csv     manifest writes by default; train reads (default_manifest_path)
runs/<name>/config.yaml                train writes; predict reads (RUN_CONFIG)
runs/<name>/predictions.csv            train writes; eval reads (PREDICTIONS_CSV, RUNS_DIR)
```
Pure functions of names: nothing here touches the disk.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

ALIGNED_FORMATS = ("jpg", "png")
FACES_CSV = "faces.csv"
ALIGN_RECORD = "align.json"
PREDICTIONS_CSV = "predictions.csv"
RUN_CONFIG = "config.yaml"
RUNS_DIR = Path("runs")
IMAGE_CACHE = ".faceage-cache"  # train's decoded images inside an aligned folder: its own, under its own lock
PRIVATE_FOLDERS = frozenset({IMAGE_CACHE})  # a job's working folders no other job's clean-up enters
MANIFESTS_DIR = Path("manifests")


def shard_table(shard: tuple[int, int] | None) -> str:
    """The faces table an align run writes: faces.csv, or faces.shard-i-of-n.csv for one shard."""
    return FACES_CSV if shard is None else f"faces.shard-{shard[0]}-of-{shard[1]}.csv"


def default_manifest_path(dataset: str, protocol: str) -> Path:
    """manifests/<dataset>/<protocol>.csv, relative to the working directory."""
    return MANIFESTS_DIR / dataset / f"{protocol}.csv"


def aligned_relpath(src_rel: str, fmt: str = "jpg") -> str:
    """The aligned output's path (POSIX, relative to DST) for a source image's path relative to SRC.

    The source extension is replaced: `a/b/001A02.JPG` → `a/b/001A02.jpg`. Two sources that would collide
    (`x.png` and `x.jpg`) are told apart by `output_names`: the later one keeps its suffix (`x.png.jpg`).
    """
    if fmt not in ALIGNED_FORMATS:
        raise ValueError(f"aligned format must be one of {ALIGNED_FORMATS}, not {fmt!r}")
    return str(PurePosixPath(src_rel).with_suffix(f".{fmt}"))


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
