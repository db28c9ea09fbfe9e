"""The one walk over a folder of images, and the one reader of a YAML settings file.

Every stage that looks for images under a folder (align's SRC, manifest --pre-aligned, predict's inputs,
export's parity faces) calls `list_images`, so they all see the same files: links to folders are entered,
hidden files are listed, and nothing outside the folder is reached through a loop of links.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

from faceage.core.atomic import is_temporary
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.header import read_header
from faceage.core.imageio import is_image_name
from faceage.core.layout import FACES_CSV, PRIVATE_FOLDERS


def list_images(root: Path, skip: Path | None = None, sources_only: bool = False) -> list[str]:
    """Relative POSIX paths of every image-extension file under `root`, sorted; `skip` (a resolved folder,
    e.g. align's DST) is not entered, nor are temporaries a killed writer left (`atomic.is_temporary`).

    Broken links, FIFOs and unreadable entries are listed too: they get a row saying why rather than
    vanishing. Links to folders are followed (a dataset linked into the folder is walked), except into a
    folder already on the current path, which would loop. With `sources_only`, folders that faceage aligned
    into (they hold its faces.csv) are skipped with a note: their crops are outputs, not photos to align.
    """
    found: list[str] = []
    above: dict[str, frozenset[Path]] = {str(root): frozenset({root.resolve()})}  # real folders up to here
    for folder, dirs, files in os.walk(root, followlinks=True):
        folder_path = Path(folder)
        real = {d: (folder_path / d).resolve() for d in dirs}
        dirs[:] = sorted(d for d in dirs if real[d] != skip and real[d] not in above[folder]
                         and not is_temporary(d) and not (sources_only and _skipped_aligned(folder_path / d)))
        above.update({str(folder_path / d): above[folder] | {real[d]} for d in dirs})
        found.extend(
            (folder_path / name).relative_to(root).as_posix()
            for name in files
            if is_image_name(name) and not is_temporary(name) and not (folder_path / name).is_dir()
        )
    return sorted(found)


def is_aligned_folder(folder: Path) -> bool:
    """Whether `folder` holds the faces.csv that `faceage align` writes (judged by its header)."""
    from faceage.core.schema import FACES  # here: it loads pandas, which the CLI's start does without

    table = folder / FACES_CSV
    if not table.is_file():  # never open a FIFO of that name
        return False
    try:
        return read_header(table) == FACES.names()  # bounded: a huge one-line file is no faces.csv
    except (OSError, FaceageError):
        return False


def _skipped_aligned(folder: Path) -> bool:
    if not is_aligned_folder(folder):
        return False
    log.warning("%s: skipped, it holds faceage's %s (an aligned folder: its crops are outputs, not photos "
                "to align)", folder, FACES_CSV)
    return True


def read_yaml_mapping(path: str | Path, what: str = "recipe") -> dict[str, Any]:
    """The mapping in a YAML file (a recipe, a run's config.yaml); FaceageError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise FaceageError(f"{path}: no such {what}; give an existing YAML file (see pipelines/).")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise FaceageError(f"{path}: not valid YAML ({exc}); fix the file.") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise FaceageError(f"{path}: a {what} must be a mapping of settings (key: value), not "
                           f"{type(data).__name__}.")
    return data


def read_json_record(path: Path, fix: str) -> dict[str, Any] | None:
    """The JSON object in `path` (a record one stage writes for the next, such as align.json); None when
    there is no such file. FaceageError naming the file and `fix` when it is not a readable JSON object."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FaceageError(f"{path}: not readable JSON ({exc}); {fix}") from None
    if not isinstance(record, dict):
        raise FaceageError(f"{path}: holds a JSON {type(record).__name__}, not an object; {fix}")
    return record


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, computed once per (path, size, modification time) in a process."""
    stat = path.stat()
    return _sha256(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # part of the cache key only: a changed file is hashed again
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def real_path(path: Path) -> Path:
    """`path` with its links resolved; a link that loops (`x -> x`) or cannot be followed stays as given,
    made absolute, instead of raising: callers compare paths, and such a file is an input's problem (its row
    says unreadable), not a crash."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        return Path(os.path.abspath(path))


def check_no_links_out(folder: Path, what: str) -> None:
    """Refuse an output folder holding links that lead outside it: writing through one would put outputs
    (or overwrite files) elsewhere, an input folder included. Links that stay inside are fine. One directory
    read per folder (os.scandir knows which entries are links): a folder of a million crops costs little."""
    if not folder.is_dir():
        return
    real = real_path(folder)
    leaving: list[str] = []
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:  # an unreadable subfolder: nothing is written through it either
            continue
        for entry in entries:
            if entry.is_symlink():  # listed, never entered
                target = real_path(Path(entry.path))
                if not target.is_relative_to(real):
                    leaving.append(f"{entry.path} → {target}")
            elif entry.is_dir(follow_symlinks=False) and entry.name not in PRIVATE_FOLDERS:
                pending.append(Path(entry.path))
    if leaving:
        shown = "; ".join(leaving[:3]) + (f" and {len(leaving) - 3} more" if len(leaving) > 3 else "")
        raise FaceageError(f"{folder}: {what} holds links that lead outside it ({shown}); faceage never "
                           f"writes through them. Remove the links, or choose another folder.")
