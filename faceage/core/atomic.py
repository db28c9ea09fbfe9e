"""Atomic file output: write to a temporary file beside the target, then rename over it.

A crash or Ctrl-C mid-write leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

_UMASK_LOCK = threading.Lock()


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


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `target` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the permissions of a plain open()
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 `text` to `target` atomically."""
    write_bytes_atomic(target, text.encode("utf-8"))


def write_csv_atomic(df: pd.DataFrame, target: str | os.PathLike[str]) -> None:
    """Write a table as CSV (no index) atomically."""
    with atomic_path(target) as tmp:
        df.to_csv(tmp, index=False)
