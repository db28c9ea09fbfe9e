"""`predict --out`: the face table written as predict goes, so memory stays flat in the number of photos and
a killed run loses nothing.

Rows are appended to a staging CSV beside the target (`.<name>.partial.csv`, flushed after every batch) and
the finished table replaces the target in one rename (`.json`: converted from the staging file in chunks).
Each row records the model and the align settings that made it (`model`, `settings` columns), so a rerun
into the same `--out` keeps the rows of photos already predicted with the same model and settings, from a
finished table or from the staging file a killed run left, and predicts only the rest. One run at a time
per table: a lock beside it refuses a second.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import pandas as pd

from faceage.core.atomic import atomic_path, hidden_name, output_error
from faceage.core.console import log
from faceage.core.errors import FaceageError
from faceage.core.lock import folder_lock
from faceage.core.outputs import check_output, check_writable
from faceage.core.schema import FACE_PREDICTIONS, TableError, read_csv_strings, validate
from faceage.core.spreadsheet import escape_cells, unescape_cells

OUT_FORMATS = (".csv", ".json")
_CHUNK_ROWS = 50_000  # rows converted to JSON at a time


def check_out(out: Path, inputs: Sequence[Path] = ()) -> None:
    """Refuse, before any work, an output whose format is unknown, that is an input or another stage's
    table, or that cannot be created (so no prediction is computed in vain)."""
    if out.suffix.lower() not in OUT_FORMATS:
        raise FaceageError(f"--out {out}: write .csv or .json (the suffix decides).")
    check_output(out, "--out", inputs=inputs, writes=FACE_PREDICTIONS)
    check_writable(out, "--out")


def staging_path(out: Path) -> Path:
    """Where the rows of a run into `out` accumulate until it finishes."""
    return out.with_name(hidden_name(out, "partial.csv"))


class PredictionFile:
    """The --out table of one predict run made with `model` and `settings` (see the module docstring)."""

    def __init__(self, out: Path, model: str, settings: str) -> None:
        check_out(out)
        self.out, self.model, self.settings = out, model, settings
        self.staging = staging_path(out)
        self.done: dict[str, pd.DataFrame] = {}  # photo path → its rows kept from an earlier run
        self._stack = contextlib.ExitStack()
        self._stream: IO[str] | None = None

    def __enter__(self) -> PredictionFile:
        self._stack.enter_context(folder_lock(self.out.parent, f"the predictions table {self.out.name}",
                                              name=hidden_name(self.out, "faceage.lock")))
        for earlier in (self.staging, self.out):
            for path, rows in self._reusable(earlier).items():
                self.done.setdefault(path, rows)
        if self.done:
            log.info("%s: %d photos already predicted with this model and settings are kept", self.out,
                     len(self.done))
        return self

    def begin(self, keep: set[str]) -> None:
        """Start the staging file with the earlier rows of the photos in `keep` (this run's inputs)."""
        kept = [rows for path, rows in self.done.items() if path in keep]
        try:
            self._stream = self.staging.open("w", encoding="utf-8", newline="")
            header = pd.DataFrame(columns=FACE_PREDICTIONS.names())
            header.to_csv(self._stream, index=False)
            for rows in kept:
                escape_cells(rows).to_csv(self._stream, index=False, header=False)
            self._stream.flush()
        except OSError as exc:
            raise output_error(self.staging, exc) from exc

    def add(self, rows: pd.DataFrame) -> None:
        """Append one batch's rows (validated) and flush them to disk."""
        assert self._stream is not None, "begin() first"
        rows = validate(rows.assign(model=self.model, settings=self.settings)[FACE_PREDICTIONS.names()],
                        FACE_PREDICTIONS, "predictions")
        try:
            escape_cells(rows).to_csv(self._stream, index=False, header=False)
            self._stream.flush()
        except OSError as exc:
            raise output_error(self.staging, exc) from exc

    def finish(self) -> None:
        """Put the finished table in place of --out (atomically) and remove the staging file."""
        self._close()
        if self.out.suffix.lower() == ".csv":
            try:
                os.replace(self.staging, self.out)
            except OSError as exc:
                raise output_error(self.out, exc) from exc
            return
        with atomic_path(self.out) as tmp, tmp.open("w", encoding="utf-8") as fh:
            _csv_to_json(self.staging, fh)
        self.staging.unlink(missing_ok=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._close()  # after a failure the staging file stays: the next run resumes from it
        self._stack.close()

    def _close(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(OSError):
                self._stream.close()
            self._stream = None

    def _reusable(self, table: Path) -> dict[str, pd.DataFrame]:
        """The rows of `table` made with this run's model and settings, by photo (none from a table that
        cannot be read, or was written before tables recorded them)."""
        if not table.is_file():
            return {}
        try:
            rows = validate(_read(table), FACE_PREDICTIONS, str(table))
        except (TableError, FaceageError, ValueError) as exc:
            log.warning("%s: not reused (%s)", table, exc)
            return {}
        if "model" not in rows.columns or "settings" not in rows.columns:
            return {}
        same = rows[(rows["model"] == self.model) & (rows["settings"] == self.settings)]
        return {str(path): part for path, part in same.groupby("path", sort=False)}


def _read(table: Path) -> pd.DataFrame:
    """A face table as text cells: CSV, or the JSON list `finish` writes (read whole)."""
    if table.suffix.lower() == ".json":
        records = json.loads(table.read_text(encoding="utf-8"))
        if not isinstance(records, list):
            raise ValueError("not a JSON list of rows")
        frame = pd.DataFrame(records, dtype=object)
        return frame.map(lambda value: None if value is None else str(value))  # cells as text, as a CSV's
    return read_csv_strings(table, "predict it again into another --out.", empty_ok=True)


def _csv_to_json(source: Path, fh: IO[str]) -> None:
    """The CSV table as one JSON list of objects (null where empty), a chunk of rows at a time."""
    fh.write("[")
    first = True
    for chunk in _chunks(source):
        for record in json.loads(chunk.to_json(orient="records")):
            fh.write(("\n" if first else ",\n") + json.dumps(record, ensure_ascii=False))
            first = False
    fh.write("\n]\n")


def _chunks(source: Path) -> Iterator[pd.DataFrame]:
    for chunk in pd.read_csv(source, dtype=str, keep_default_na=False, na_values=[""], chunksize=_CHUNK_ROWS):
        yield validate(unescape_cells(chunk), FACE_PREDICTIONS, str(source))
