"""The labels table every dataset adapter returns, and the one table of rows left out (path, reason, detail).

`finish_labels` is the last step of every adapter: optional columns filled, splits normalised, duplicate
paths dropped (and listed), the LABELS contract checked, rows sorted by path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from faceage.core.errors import FaceageError
from faceage.core.schema import LABELS, validate

SPLITS = ("train", "valid", "test")
DROPPED_COLUMNS = ["path", "reason", "detail"]
_SPLIT_ALIASES = {"training": "train", "val": "valid", "validation": "valid", "dev": "valid",
                  "testing": "test"}


@dataclass(frozen=True)
class Labels:
    """A validated LABELS table and the rows the adapter dropped (path, reason, detail)."""

    table: pd.DataFrame
    dropped: pd.DataFrame


def dropped_rows(paths: Sequence[str] | pd.Series, reason: str | Sequence[str] | pd.Series,
                 detail: str | Sequence[str] | pd.Series) -> pd.DataFrame:
    """Rows left out of a table: one per path, with one reason and detail for all or one each."""
    paths = list(paths)

    def column(value: str | Sequence[str] | pd.Series) -> list[str]:
        return [value] * len(paths) if isinstance(value, str) else [str(v) for v in value]

    return pd.DataFrame({"path": paths, "reason": column(reason), "detail": column(detail)},
                        columns=DROPPED_COLUMNS)


def finish_labels(frame: pd.DataFrame, dataset: str, origin: str,
                  dropped: pd.DataFrame | None = None) -> Labels:
    """Fill optional columns, normalise splits, drop duplicate paths, validate and sort by path."""
    frame = frame.copy()
    for col in ("age_std", "subject", "split"):
        if col not in frame.columns:
            frame[col] = None
    frame["split"] = [_split_name(v, origin) for v in frame["split"]]
    frame["dataset"] = dataset
    frame, dups = _drop_duplicates(frame)
    table = validate(frame[LABELS.names()].reset_index(drop=True), LABELS, origin)
    parts = [d for d in (dropped, dups) if d is not None and not d.empty]
    dropped = pd.concat(parts, ignore_index=True) if parts else dropped_rows([], "", "")
    return Labels(table.sort_values("path", ignore_index=True), dropped)


def _drop_duplicates(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep one row of a path listed twice with one label; drop all rows of a path with conflicting labels."""
    keys = frame[["path", "age", "age_std", "subject", "split"]].astype(str).drop_duplicates()
    variants = keys.groupby("path").size()
    conflicting = frame["path"].isin(variants.index[variants > 1])
    extra = frame["path"].duplicated(keep="first") & ~conflicting
    dropped = pd.concat([dropped_rows(frame.loc[extra, "path"], "duplicate", "listed twice, same label"),
                         dropped_rows(frame.loc[conflicting, "path"], "duplicate", "conflicting labels")],
                        ignore_index=True)
    return frame[~(extra | conflicting)], dropped


def _split_name(value: object, origin: str) -> str:
    text = "" if value is None or pd.isna(value) else str(value).strip().lower()
    text = _SPLIT_ALIASES.get(text, text)
    if text not in ("", *SPLITS):
        raise FaceageError(f"{origin}: split value {value!r} is not one of {', '.join(SPLITS)}; "
                           f"fix the split column.")
    return text
