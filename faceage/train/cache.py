"""The decoded-image cache: every aligned image decoded once into a uint8 memory-mapped file.

Training reads the same images every epoch; decoding JPEGs each time is what keeps a GPU waiting. The
cache is one `(N, size, size, 3)` uint8 array in `<key>.u8` with a `<key>.json` sidecar (shape, size, key).
The key hashes the images root, the ordered paths, each file's size and mtime and the size, so a changed,
added or reordered image gives a new cache. Where: `<images_root>/.faceage-cache/`, or `FACEAGE_CACHE_DIR`
when set, or `~/.cache/faceage` when the images folder is read-only. numpy + PIL only (no torch); each image
is decoded by `core.imageio.decode_image`, as export and predict decode aligned faces.
"""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import stat
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
from rich.progress import Progress, TaskID

from faceage.core.atomic import atomic_path, remove_temporaries, write_text_atomic
from faceage.core.console import RateColumn, log, progress_bar
from faceage.core.errors import FaceageError
from faceage.core.imageio import decode_image
from faceage.core.layout import IMAGE_CACHE
from faceage.core.lock import folder_lock

CACHE_VERSION = 1
CACHE_LOCK = ".faceage-cache.lock"
_CHUNK = 32  # images per task of the decoding pool
_PER_WORKER = 32  # below this many images per worker a process pool costs more than it saves


def cache_dir_for(images_root: Path) -> Path:
    """Where the cache of images under `images_root` lives (see the module docstring for the order)."""
    override = os.environ.get("FACEAGE_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    if _writable(images_root):
        return images_root / IMAGE_CACHE
    return Path("~/.cache/faceage").expanduser()


def _writable(folder: Path) -> bool:
    """True if we may create the cache folder in `folder`; a folder without write bits counts as read-only
    even for root, who could write there anyway."""
    target = folder / IMAGE_CACHE
    probe = target if target.is_dir() else folder
    try:
        mode = probe.stat().st_mode
    except OSError:
        return False
    return bool(mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) and os.access(probe, os.W_OK | os.X_OK)


def cache_key(images_root: Path, paths: Sequence[str], size: int) -> tuple[str, str]:
    """(key of the content, key of the file list): the first changes when any image changes; the second
    only when the list of paths changes, and lets a rebuild remove the stale cache it replaces."""
    content = hashlib.sha256(f"faceage-cache v{CACHE_VERSION} size={size}\n".encode())
    listing = hashlib.sha256(f"{images_root.resolve()}\nsize={size}\n".encode())
    content.update(f"{images_root.resolve()}\n".encode())
    for rel in paths:
        file = images_root / rel
        try:
            st = file.stat()
        except OSError as exc:
            raise FaceageError(
                f"image {file} named in the list cannot be read ({exc.strerror}); re-run `faceage align` "
                "or remove it from the manifest"
            ) from exc
        content.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        listing.update(f"{rel}\n".encode())
    return content.hexdigest()[:32], listing.hexdigest()[:32]


def open_cache(
    images_root: Path, paths: Sequence[str], size: int = 256, workers: int | None = None
) -> np.ndarray:
    """The (N, size, size, 3) uint8 read-only memory map of the images `paths` (relative to `images_root`),
    built on first use (parallel decode with a progress bar, written atomically) and reused while no image
    changes. An unreadable image raises FaceageError naming it."""
    images_root = Path(images_root)
    if not paths:
        raise FaceageError(f"no images to cache under {images_root}: the list of paths is empty")
    if size < 1:
        raise FaceageError(f"cache image size must be positive, not {size}")
    key, listing = cache_key(images_root, paths, size)
    folder = cache_dir_for(images_root)
    data_file, meta_file = folder / f"{key}.u8", folder / f"{key}.json"
    shape = (len(paths), size, size, 3)
    if not _valid(data_file, meta_file, key, shape):
        # one builder at a time (another training of the same images waits, then reuses its cache); a
        # killed build's full-size temporary is removed by the next build, under the same lock
        with folder_lock(_writable_folder(folder), "the image cache", name=CACHE_LOCK, wait=True):
            if not _valid(data_file, meta_file, key, shape):
                remove_temporaries(folder)
                _build(images_root, paths, size, data_file, workers)
                meta = {"version": CACHE_VERSION, "key": key, "listing": listing, "shape": list(shape),
                        "size": size, "dtype": "uint8", "images_root": str(images_root.resolve())}
                write_text_atomic(meta_file, json.dumps(meta, indent=1) + "\n")
                _remove_stale(folder, key, listing)
    return np.memmap(data_file, dtype=np.uint8, mode="r", shape=shape)


def _valid(data_file: Path, meta_file: Path, key: str, shape: tuple[int, ...]) -> bool:
    """True if a finished cache with this key and shape exists (the sidecar is written after the data)."""
    try:
        meta = json.loads(meta_file.read_text())
        return (meta.get("key") == key and tuple(meta.get("shape", ())) == shape
                and data_file.stat().st_size == int(np.prod(shape)))
    except (OSError, ValueError):
        return False


def _remove_stale(folder: Path, key: str, listing: str) -> None:
    """Delete earlier caches of the same file list (their images have since changed)."""
    for meta_file in folder.glob("*.json"):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("listing") == listing and meta.get("key") != key:
            meta_file.unlink(missing_ok=True)
            (folder / f"{meta.get('key')}.u8").unlink(missing_ok=True)
            log.debug("removed stale image cache %s", meta_file.with_suffix(".u8"))


def _build(images_root: Path, paths: Sequence[str], size: int, data_file: Path, workers: int | None) -> None:
    """Decode every image into a new memory map row by row (flat memory), then rename it into place."""
    n = len(paths)
    workers = max(1, min(workers or os.cpu_count() or 1, n // _PER_WORKER))
    log.info("caching %d images from %s at %d px in %s (%d workers)", n, images_root, size, data_file.parent,
             workers)
    with atomic_path(_writable_folder(data_file.parent) / data_file.name) as tmp:
        _allocate(tmp, n * size * size * 3)
        files = [str(images_root / rel) for rel in paths]
        chunks = [(str(tmp), n, size, start, files[start:start + _CHUNK]) for start in range(0, n, _CHUNK)]
        with progress_bar(RateColumn("images")) as progress:
            task = progress.add_task("caching images", total=n)
            if workers == 1:
                _drain(map(_write_rows, chunks), progress, task)
                return
            # fork: no re-import of the caller's main module (scripts without a main guard work), and the
            # children touch only numpy and PIL, never CUDA.
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
            with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                futures = [pool.submit(_write_rows, chunk) for chunk in chunks]
                try:
                    _drain((f.result() for f in as_completed(futures)), progress, task)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise


def _writable_folder(folder: Path) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceageError(f"cannot create the image cache folder {folder} ({exc.strerror}); set "
                           "FACEAGE_CACHE_DIR to a writable folder") from exc
    return folder


def _allocate(file: Path, nbytes: int) -> None:
    """Reserve the cache's bytes on disk now: a full disk fails here with a clear message, not later as a
    crash while writing through the memory map."""
    with file.open("r+b") as fh:
        if hasattr(os, "posix_fallocate"):
            try:
                os.posix_fallocate(fh.fileno(), 0, nbytes)
                return
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise FaceageError(f"not enough disk space for the {nbytes / 1e9:.1f} GB image cache "
                                       f"in {file.parent}; free space or set FACEAGE_CACHE_DIR") from exc
        fh.truncate(nbytes)  # sparse: this platform or file system cannot reserve space


def _drain(results: Iterable[tuple[int, str | None]], progress: Progress, task: TaskID) -> None:
    """Advance the bar per finished chunk; the first failure becomes a FaceageError naming the image."""
    for done, error in results:
        if error is not None:
            raise FaceageError(error)
        progress.advance(task, done)


def _write_rows(chunk: tuple[str, int, int, int, list[str]]) -> tuple[int, str | None]:
    """Decode a run of images into their rows of the cache file; a failure comes back as a message
    (it crosses processes) naming the image."""
    tmp, n, size, start, files = chunk
    rows = np.memmap(tmp, dtype=np.uint8, mode="r+", shape=(n, size, size, 3))
    for i, file in enumerate(files, start):
        try:
            rows[i] = decode_image(Path(file), size)
        except FaceageError as exc:
            return 0, f"cannot cache image {exc} Re-run `faceage align` for it or drop it from the manifest."
    rows.flush()
    return len(files), None
