"""What a command may write over. An output the user names (`--out`, `--json`, `--report`, `--onnx`) may
replace a file, but never one of the command's inputs, a folder, or another stage's table (faces.csv, a
manifest, a predictions table); a file faceage adds beside a named one (a sidecar: the CS table beside a
plot) replaces only an earlier sidecar of its kind. Checked before any work, so nothing is computed in vain.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from faceage.core.atomic import output_error, temporary_affixes
from faceage.core.errors import FaceageError
from faceage.core.files import real_path
from faceage.core.header import read_header
from faceage.core.layout import FACES_CSV, PREDICTIONS_CSV
from faceage.core.schema import FACE_PREDICTIONS, FACES, MANIFEST, PREDICTIONS, TableSpec

# Most specific first: a faces table also has the columns a predictions table needs, not the reverse.
_STAGE_TABLES = (FACES, FACE_PREDICTIONS, MANIFEST, PREDICTIONS)


def table_kind(path: Path) -> str | None:
    """The stage table `path` holds (faces, face predictions, manifest, predictions), judged by its name and
    header; None for anything else or a file that does not exist."""
    if not path.is_file():
        return None
    if path.name == FACES_CSV or (path.name.startswith("faces.shard-") and path.suffix == ".csv"):
        return FACES.kind
    header = set(_header(path))
    for spec in _STAGE_TABLES:
        if {c.name for c in spec.columns if c.required} <= header:
            return spec.kind
    return PREDICTIONS.kind if path.name == PREDICTIONS_CSV else None


def check_output(path: Path, flag: str, inputs: Iterable[Path] = (), writes: TableSpec | None = None) -> None:
    """Refuse `path` as the output of `flag` when it is a folder, one of `inputs`, or a stage table other
    than the kind this output writes (`writes`)."""
    if path.is_dir():
        raise FaceageError(f"{flag} {path}: is a folder; give a file path.")
    if real_path(path) in {real_path(p) for p in inputs}:
        raise FaceageError(f"{flag} {path}: this is an input of the command; choose another output path.")
    kind = table_kind(path)
    if kind is not None and (writes is None or kind != writes.kind):
        raise FaceageError(f"{flag} {path}: holds a {kind} table that another stage wrote, and faceage never "
                           f"replaces one; choose another output path.")


def check_writable(path: Path, flag: str) -> None:
    """Refuse an output that cannot be created (no permission, read-only disk, a name too long) before the
    work that fills it: a temporary file is made beside it and removed."""
    prefix, suffix = temporary_affixes(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise FaceageError(f"{flag} {output_error(path, exc)}") from exc
    os.close(fd)
    os.unlink(probe)


def check_sidecar(path: Path, beside: str, ours: Callable[[Path], bool]) -> None:
    """Refuse to write the sidecar `path` (named after `beside`) over a file that `ours` does not recognise
    as an earlier sidecar of the same kind."""
    if path.is_dir() or (path.exists() and not ours(path)):
        raise FaceageError(f"{beside} would also write {path}, which exists and was not written by faceage "
                           f"as that file; move it, or choose another name for {beside}.")


def has_header(first: str) -> Callable[[Path], bool]:
    """A sidecar check: the file is a CSV whose first column is `first`."""
    return lambda path: path.is_file() and _header(path)[:1] == [first]


def _header(path: Path) -> list[str]:
    """The column names of a file that may be a table: none when it cannot be read as one."""
    try:
        return read_header(path)
    except (OSError, FaceageError):
        return []
