"""Atomic file output: write to a temporary file beside the target, then rename over it.

A crash or Ctrl-C mid-write leaves either the old file or the new one, never half of either; a kill -9
can leave a temporary (`.<name>.<8 random>.tmp<suffix>`), which `is_temporary` recognises so that no stage
mistakes it for a crop or a checkpoint and the next run removes it (`remove_temporaries`). A failure to
write is an `OutputError`: one message naming the file and the fix (free space, permissions).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from faceage.core.errors import FaceageError
from faceage.core.layout import PRIVATE_FOLDERS
from faceage.core.spreadsheet import escape_cells

if TYPE_CHECKING:
    import pandas as pd

_UMASK_LOCK = threading.Lock()
# mkstemp adds 8 characters from [a-z0-9_]; a staging folder (mkdtemp) has the same shape without a suffix
_TEMPORARY = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[^./]{0,16})?$")
_RANDOM = 8
_NAME_MAX = 255  # bytes, where the file system does not say
_FIXES = {
    errno.ENOSPC: "free disk space, then run the same command again",
    errno.EDQUOT: "free space within your quota, then run the same command again",
    errno.EACCES: "fix the folder's permissions or choose a writable one",
    errno.EPERM: "fix the folder's permissions or choose a writable one",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.ENOTDIR: "a file stands where a folder of the path should be: choose another path",
    errno.EEXIST: "a file stands where a folder of the path should be: choose another path",
    errno.EISDIR: "a folder stands where the file should be: choose another path",
    errno.ENAMETOOLONG: "the name is too long for this file system: choose a shorter one",
}


class OutputError(FaceageError, OSError):
    """A file could not be written; the message names it and says how to fix it."""

    def __str__(self) -> str:  # the message, not OSError's "[Errno 28] …" rendering of errno and filename
        return str(self.args[0]) if self.args else ""


def output_error(target: str | os.PathLike[str], exc: BaseException) -> OutputError:
    """The one message for a failed write of `target`, with the fix for its cause."""
    code = getattr(exc, "errno", None)
    reason = getattr(exc, "strerror", None) or str(exc)
    fix = _FIXES.get(code or -1, "check the disk and the folder's permissions, then run it again")
    error = OutputError(f"{target}: cannot write it ({reason}); {fix}.")
    error.errno, error.strerror, error.filename = code if code is not None else 0, reason, str(target)
    return error


def _umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere it can only be read by setting it, which
    briefly changes it for every thread, so that path is serialised."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def temporary_affixes(target: Path) -> tuple[str, str]:
    """(prefix, suffix) for mkstemp/mkdtemp beside `target` whose whole name fits the file system's limit
    however long the target's own name is (the name part is shortened; the random part keeps it unique)."""
    suffix = ".tmp" + (target.suffix if len(target.suffix) <= 17 else "")
    try:
        limit = os.pathconf(target.parent if target.parent.exists() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = _NAME_MAX
    room = limit - len(suffix.encode()) - _RANDOM - 2  # the leading and trailing dots of the prefix
    name = target.name.encode()[:max(room, 1)].decode(errors="ignore")
    return f".{name}.", suffix


def hidden_name(target: Path, label: str) -> str:
    """`.<target's name>.<label>`: a hidden file beside `target` that belongs to it (a lock, a staging
    table), its name shortened (with a hash of it) when it would not fit the file system's limit."""
    name = target.name
    if len(name.encode()) + len(label.encode()) + 2 > _NAME_MAX:
        short = name.encode()[:_NAME_MAX // 2].decode(errors="ignore")
        name = f"{short}~{hashlib.blake2b(target.name.encode(), digest_size=4).hexdigest()}"
    return f".{name}.{label}"


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is one of `atomic_path`'s temporaries (left by a killed process)."""
    return _TEMPORARY.match(name) is not None


def remove_temporaries(folder: Path) -> int:
    """Delete the temporaries a killed run left anywhere under `folder` (links are not followed; another
    job's private folders, `layout.PRIVATE_FOLDERS`, are not entered); returns how many. Call it only while
    holding the folder's lock, so no live writer loses its file."""
    removed = 0
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in PRIVATE_FOLDERS]
        for name in [*files, *dirs]:
            if is_temporary(name):
                path = Path(root, name)
                with contextlib.suppress(OSError):
                    if path.is_dir() and not path.is_symlink():
                        for inner in path.iterdir():
                            inner.unlink()
                        path.rmdir()
                    else:
                        path.unlink()
                    removed += 1
        dirs[:] = [d for d in dirs if not is_temporary(d)]
    return removed


def remove_temporaries_of(target: Path) -> int:
    """Delete the temporaries (files or staging folders) a killed write of `target` left beside it; returns
    how many. Call it only while holding the lock that guards `target`."""
    prefix, _ = temporary_affixes(target)
    removed = 0
    with contextlib.suppress(OSError):
        for entry in list(target.parent.iterdir()):
            if is_temporary(entry.name) and entry.name.startswith(prefix):
                with contextlib.suppress(OSError):
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
                    removed += 1
    return removed


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` if the block succeeds.

    An OSError while making, writing or renaming the file becomes an `OutputError` naming `target`.
    """
    target = Path(target)
    prefix, suffix = temporary_affixes(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    except OSError as exc:
        raise output_error(target, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get a plain open()'s permissions
        yield tmp
        os.replace(tmp, target)
    except OutputError:
        raise
    except OSError as exc:
        raise output_error(target, exc) from exc
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 `text` to `target` atomically."""
    write_bytes_atomic(target, text.encode("utf-8"))


def write_csv_atomic(df: pd.DataFrame, target: str | os.PathLike[str]) -> None:
    """Write a table as CSV (no index) atomically, its text cells safe from spreadsheets."""
    with atomic_path(target) as tmp:
        escape_cells(df).to_csv(tmp, index=False)
