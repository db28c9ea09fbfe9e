"""Atomic writes: all or nothing, and the permissions of an ordinary file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from faceage.core.atomic import atomic_path, write_text_atomic


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_written_file_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_text_atomic(tmp_path / "sub" / "a.txt", "x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "sub" / "a.txt").stat().st_mode)
    assert mode == 0o644
