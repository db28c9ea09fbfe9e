"""`faceage align SRC DST`: align every image of a folder tree, in worker processes, resumably.

The parent process plans the work, hands source paths to workers (`align_pool`), and writes what they send
back: each aligned crop atomically (on a writer thread, so file I/O overlaps detection), then, once it is on
disk, its row. faces.csv is rewritten atomically every few seconds and when the run ends for any reason
(Ctrl-C included), so it always lists exactly the images whose outputs exist. Memory stays flat: images live
only inside the worker handling them; the parent keeps one small row per image.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from rich.table import Table

from faceage.align.image import Row
from faceage.align.plan import (
    Job,
    Shard,
    check_folders,
    in_shard,
    make_jobs,
    no_images,
    read_earlier,
    reusable,
)
from faceage.align.pool import results, worker_count
from faceage.align.record import write_align_record
from faceage.align.settings import AlignSettings
from faceage.core.atomic import OutputError, remove_temporaries, write_bytes_atomic, write_csv_atomic
from faceage.core.console import RateColumn, log, progress_bar
from faceage.core.errors import FaceageError, StageInterruptedError
from faceage.core.files import check_no_links_out, list_images
from faceage.core.layout import output_names, shard_table
from faceage.core.lock import folder_lock
from faceage.core.schema import FACES

STATUSES = ("ok", "no_face", "too_small", "unreadable", "too_large", "unsupported")
_FLUSH_SECONDS = 5.0  # faces.csv is rewritten at most this often, and never for more than ~5% of the run time


@dataclass
class AlignSummary:
    """What an align run did: rows in its table by status, how many it processed and reused, how fast."""

    table: Path
    counts: dict[str, int] = field(default_factory=dict)
    processed: int = 0
    reused: int = 0
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        """Images processed per second of this run (reused rows excluded)."""
        return self.processed / self.seconds if self.seconds > 0 else 0.0


class AlignInterruptedError(StageInterruptedError):
    """Ctrl-C during `align_folder`: faces.csv was written; `summary` says what is done (the CLI shows it)."""

    def __init__(self, summary: AlignSummary) -> None:
        super().__init__(f"interrupted after {summary.processed} images; {summary.table} lists every crop "
                         "written. Run the same command again to resume.")
        self.summary = summary

    def details(self) -> list[Table]:
        return [summary_table(self.summary)]


def align_folder(
    src: Path,
    dst: Path,
    settings: AlignSettings = AlignSettings(),  # noqa: B008 - frozen, so a shared default is safe
    workers: int | None = None,
    shard: Shard | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> AlignSummary:
    """Align every image under `src` into `dst` and write its faces table; returns the run's summary.

    `workers` defaults to every core (two when the detector runs on CUDA); `shard` (i, n) restricts the
    run to its share and writes faces.shard-i-of-n.csv; `limit` stops after that many newly processed
    images (a partial run).
    Ctrl-C raises `AlignInterruptedError` carrying the summary, after faces.csv is written.
    """
    started = time.perf_counter()
    settings.check()
    if workers is not None and workers < 1:
        raise FaceageError(f"--workers {workers}: give at least 1 worker (leave it out for all cores).")
    src, dst = check_folders(Path(src), Path(dst))
    rels = list_images(src, skip=dst, sources_only=True)
    if not rels:
        raise no_images(src)
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FaceageError(f"{dst}: cannot create the output folder ({exc}); choose a writable DST.") from exc
    with contextlib.ExitStack() as held:  # one writer per DST: a shard shares it with the other shards only
        held.enter_context(folder_lock(dst, "the align output", shared=shard is not None))
        if shard is not None:
            held.enter_context(folder_lock(dst, f"shard {shard[0]}/{shard[1]} of the align output",
                                           name=f".faceage-{shard_table(shard)}.lock"))
        else:
            remove_temporaries(dst)  # left by a killed run; no other writer can be using them now
        check_no_links_out(dst, "the align output")
        write_align_record(dst, settings)
        return _align(src, dst, rels, settings, workers, shard, progress, limit, started)


def _align(src: Path, dst: Path, rels: list[str], settings: AlignSettings, workers: int | None,
           shard: Shard | None, progress: bool, limit: int | None, started: float) -> AlignSummary:
    """The body of `align_folder`, run while DST's lock is held."""
    names = output_names(rels, settings.fmt)
    jobs = make_jobs(src, [r for r in rels if in_shard(r, shard)], names)
    digest = settings.digest()
    table = _Table(dst / shard_table(shard))
    earlier = read_earlier(dst, table.path.name)
    todo: list[Job] = []
    for job in jobs:
        row = earlier.get(job.src)
        if row is not None and reusable(row, job, digest, dst):
            table.rows[job.src] = row
        else:
            todo.append(job)
    todo = todo[:limit] if limit is not None else todo
    summary = AlignSummary(table.path, reused=len(table.rows))
    where = f"{src}{_shard_text(shard)}"
    log.info(f"{len(jobs)} images in {where}: {summary.reused} already aligned, {len(todo)} to do")
    workers = worker_count(workers, settings.device, len(todo))
    writer = _Writer(dst, table)
    failure: FaceageError | None = None
    interrupted: KeyboardInterrupt | None = None
    try:
        with progress_bar(RateColumn("faces"), enabled=progress, transient=False) as bar:
            task = bar.add_task("align", total=len(todo))
            for row, payload in results(todo, src, settings, digest, workers):
                writer.put(row, payload)
                summary.processed += 1
                bar.advance(task)
    except KeyboardInterrupt as exc:
        interrupted = exc
    except FaceageError as exc:  # a crop or the table could not be written, a worker died
        failure = exc
    failure = _finish(writer, table, failure)
    summary.counts = dict(Counter(str(r["status"]) for r in table.rows.values()))
    summary.seconds = time.perf_counter() - started
    if failure is not None:
        raise failure
    if interrupted is not None:
        summary.interrupted = True
        raise AlignInterruptedError(summary) from interrupted
    return summary


def _finish(writer: _Writer, table: _Table, failure: FaceageError | None) -> FaceageError | None:
    """Finish the crops already handed over and write the table, whatever stopped the run; the one error
    that says what failed and what the table now holds (None: all is written)."""
    try:
        writer.close()
    except FaceageError as exc:
        failure = failure or exc
    try:
        table.flush()
    except OutputError as exc:
        if failure is None:
            return exc
        return FaceageError(f"{failure}; {table.path} could not be updated either ({exc.strerror or exc}), "
                            "so the crops this run wrote are redone next time. Free space or fix "
                            "permissions, then run the same command again.")
    if failure is not None:
        return FaceageError(f"{failure}; {table.path.name} lists every face written so far. Free space or "
                            "fix permissions, then run the same command again to resume.")
    return None


def _shard_text(shard: Shard | None) -> str:
    return "" if shard is None else f" (shard {shard[0]}/{shard[1]})"


class _Table:
    """The run's faces table: rows by source, rewritten atomically at intervals and at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, Row] = {}
        self._last = time.perf_counter()
        self._interval = _FLUSH_SECONDS

    def add(self, row: Row) -> None:
        self.rows[str(row["src"])] = row
        if time.perf_counter() - self._last >= self._interval:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        began = time.perf_counter()
        df = pd.DataFrame([self.rows[k] for k in sorted(self.rows)], columns=FACES.names())
        write_csv_atomic(df, self.path)
        self._last = time.perf_counter()
        # a table that takes long to write (millions of rows) is written less often: at most ~5% overhead
        self._interval = max(_FLUSH_SECONDS, 20 * (self._last - began))


class _Writer:
    """Writes crops on one background thread; a row joins the table only once its crop is on disk."""

    _BACKLOG = 64  # crops waiting to be written before the parent stops to let the writer catch up

    def __init__(self, dst: Path, table: _Table) -> None:
        self.dst, self.table = dst, table
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="faceage-writer")
        self.pending: deque[tuple[Future[None], Row]] = deque()

    def put(self, row: Row, payload: bytes | None) -> None:
        if payload is None:
            self.table.add(row)
        else:
            future = self.pool.submit(write_bytes_atomic, self.dst / str(row["dst"]), payload)
            self.pending.append((future, row))
        self._collect(wait=False)

    def close(self) -> None:
        """Finish every write already handed over (their rows are then listed) and stop the thread."""
        try:
            self._collect(wait=True)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _collect(self, wait: bool) -> None:
        while self.pending and (wait or self.pending[0][0].done() or len(self.pending) > self._BACKLOG):
            future, row = self.pending.popleft()
            try:
                future.result()
            except OSError as exc:  # disk full, permissions: stop the run, saying where
                reason = getattr(exc, "strerror", None) or exc
                raise FaceageError(f"{self.dst / str(row['dst'])}: cannot write the aligned face ({reason})"
                                   ) from exc
            self.table.add(row)


def summary_table(summary: AlignSummary) -> Table:
    """The closing summary: rows of the table by status (ok first, then each failure reason)."""
    table = Table(title=f"faceage align → {summary.table}", title_justify="left", min_width=72)
    table.add_column("status")
    table.add_column("images", justify="right")
    for status in sorted(summary.counts, key=lambda s: (STATUSES.index(s) if s in STATUSES else 99, s)):
        table.add_row(status, str(summary.counts[status]), style="green" if status == "ok" else None)
    table.add_row("total", str(summary.total), style="bold")
    table.caption = (
        f"{summary.processed} processed at {summary.rate:.1f} faces/s, {summary.reused} reused "
        f"from an earlier run, {summary.seconds:.1f} s" + (" (interrupted)" if summary.interrupted else "")
    )
    return table
