"""Where an align run's images are processed: in this process, or in a pool of spawned worker processes.

Each worker builds one detector (one onnxruntime thread) on first use and aligns jobs in small chunks; at
most a few chunks per worker are in flight, so memory does not grow with the number of images. A worker
that dies (killed for memory, a crashing decoder) stops the run with a clear error instead of hanging it.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from faceage.align.detect import Detector, make_detector
from faceage.align.detect.onnx import wants_cuda
from faceage.align.image import Loaded, Row, align_image, empty_row, load_image
from faceage.align.plan import Job
from faceage.align.settings import AlignSettings
from faceage.core.console import log
from faceage.core.errors import FaceageError

Result = tuple[Row, bytes | None]
CHUNK = 8  # jobs per task: amortises the inter-process round trip, small enough for a smooth progress bar
IN_FLIGHT = 4  # chunks queued per worker
ORPHAN_CHECK_SECONDS = 0.5
# Workers when the detector runs on CUDA: each process holds its own CUDA context (hundreds of MB of GPU
# memory, seconds to start), and two already keep one GPU's detector busy while they decode and warp.
GPU_WORKERS = 2


def worker_count(requested: int | None, device: str, jobs: int) -> int:
    """Workers for `jobs` images: `requested`, else one per core, or GPU_WORKERS when the detector runs on
    CUDA (`device` asks for it and onnxruntime offers it); never more than there are jobs."""
    default = GPU_WORKERS if wants_cuda(device) else os.cpu_count() or 1
    return max(1, min(requested or default, jobs or 1))


def results(
    jobs: list[Job], src: Path, settings: AlignSettings, digest: str, workers: int
) -> Iterator[Result]:
    """(row, encoded crop or None) for each job, in completion order."""
    if not jobs:
        return
    if workers == 1:
        yield from _Worker(src, settings, digest).run(jobs)
        return
    chunks = iter([jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)])
    context = _context()
    pool = ProcessPoolExecutor(workers, context, initializer=_init_worker,
                               initargs=(src, settings, digest, os.getpid()))
    pending: set[Future[list[Result]]] = set()
    try:
        while True:
            while len(pending) < IN_FLIGHT * workers and (chunk := next(chunks, None)) is not None:
                pending.add(pool.submit(_work, chunk))
            if not pending:
                return
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                yield from future.result()
    except BrokenProcessPool as exc:
        raise FaceageError(
            f"a worker process stopped unexpectedly ({exc}); faces.csv keeps every image done so far. "
            "Rerun the same command to resume; if it happens again, lower --workers (memory)."
        ) from exc
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # queued chunks are dropped, running ones finish


def _context() -> multiprocessing.context.BaseContext:
    """How workers start: never plain fork (onnxruntime and rich's threads in this process break under it).

    Where available, a fork server that has imported this module once forks each worker ready to run, so a
    worker costs milliseconds, not the ~1 s of CPU a freshly spawned interpreter spends importing.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


class _Worker:
    """Aligns jobs with one detector (one onnxruntime thread), built on first use."""

    def __init__(self, src: Path, settings: AlignSettings, digest: str) -> None:
        self.src, self.settings, self.digest = src, settings, digest
        self.detector: Detector | None = None

    def run(self, jobs: list[Job]) -> Iterator[Result]:
        """Align `jobs` in order while a thread decodes the next image (decoding releases the GIL, as does
        the detector), so loading overlaps detection instead of adding to it."""
        with ThreadPoolExecutor(1, thread_name_prefix="faceage-load") as loader:
            upcoming = [loader.submit(load_image, self.src / job.src) for job in jobs[:1]]
            for i, job in enumerate(jobs):
                current = upcoming.pop()
                if i + 1 < len(jobs):
                    upcoming.append(loader.submit(load_image, self.src / jobs[i + 1].src))
                yield self(job, current)

    def __call__(self, job: Job, loading: Future[Loaded] | None = None) -> Result:
        if self.detector is None:
            s = self.settings
            self.detector = make_detector(s.detector, s.model, 1, s.device, s.score_threshold)
        def fresh() -> Row:
            return empty_row(job.src, self.settings, self.digest, job.src_bytes, job.src_mtime_ns)

        try:
            loaded = None if loading is None else loading.result()
            return align_image(self.detector, self.src / job.src, fresh(), self.settings, job.dst, loaded)
        except Exception as exc:  # one odd image must not stop a run of millions: it gets a row saying why
            log.warning(f"{job.src}: failed while aligning", exc_info=True)
            error = f"could not be processed ({type(exc).__name__}: {exc}); please report it."
            return {**fresh(), "status": "unreadable", "error": error}, None


_WORKER: _Worker | None = None


def _init_worker(src: Path, settings: AlignSettings, digest: str, parent: int) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the pool
    threading.Thread(target=_exit_with, args=(parent,), name="faceage-orphan-watch", daemon=True).start()
    _WORKER = _Worker(src, settings, digest)


def _exit_with(parent: int) -> None:
    """Exit this worker as soon as the align process that started it is gone (killed with -9, say): a
    worker's own parent is the fork server, so the kernel would not tell it."""
    while True:
        time.sleep(ORPHAN_CHECK_SECONDS)
        try:
            os.kill(parent, 0)
        except ProcessLookupError:
            os._exit(1)
        except PermissionError:  # alive, owned by another user (pid reused): treat as gone
            os._exit(1)


def _work(chunk: list[Job]) -> list[Result]:
    assert _WORKER is not None, "worker process not initialised"
    return list(_WORKER.run(chunk))
