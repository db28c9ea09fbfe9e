"""One writer per output folder: an advisory lock (fcntl.flock) held for a whole job.

The lock lives in a small file inside the folder that names its holder (process, host, command, start);
a second job is refused at once with that name. The kernel releases a flock when its process dies, kill -9
included, so a crashed run never blocks the next one. Shared locks let jobs that write disjoint parts of a
folder (align shards) run side by side, while an exclusive lock excludes them all.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from faceage.core.atomic import output_error
from faceage.core.console import log
from faceage.core.errors import FaceageError

LOCK_FILE = ".faceage.lock"


class BusyError(FaceageError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def folder_lock(folder: Path, what: str, name: str = LOCK_FILE, shared: bool = False,
                wait: bool = False) -> Iterator[None]:
    """Hold `folder`'s lock file `name` (exclusive, or shared with other shared holders) for the block.

    `what` says in the refusal what the folder is ("the align output", "the run folder"); with `wait`, a
    busy lock is waited for (saying so) instead of refused: for work another job may be doing for us.
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise output_error(folder / name, exc) from exc
    try:
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd) or "jobs that share it, such as align shards"
            if not wait:
                raise BusyError(f"{folder}: {what} is in use by another faceage process ({holder}); wait "
                                f"for it to finish, or stop it, then run again (or choose another folder)."
                                ) from None
            log.info("%s: %s is in use by another faceage process (%s); waiting for it", folder, what, holder)
            fcntl.flock(fd, mode)
        if not shared:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, _me().encode())
            except OSError as exc:  # a full disk stops the job here, naming the file
                raise output_error(folder / name, exc) from exc
        try:
            yield
        finally:
            if not shared:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)  # a later refusal never names a holder that has finished
    finally:
        os.close(fd)  # releases the lock


def _me() -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
    return f"pid {os.getpid()} on {socket.gethostname()}, since {started}: {command}\n"


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        return os.pread(fd, 400, 0).decode(errors="replace").strip()
    return ""
