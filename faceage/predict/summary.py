"""What `faceage predict` shows on the console: the first rows of the face table, readable in 80 columns,
and one line per image without a prediction."""

from __future__ import annotations

import os

import pandas as pd
from rich.table import Table

_BOX_WIDTH = 100  # terminal columns from which the predictions table shows each face's box


def predictions_table(table: pd.DataFrame, limit: int = 50, width: int = 80,
                      total: int | None = None) -> Table:
    """The faces as a rich table (the first `limit` rows of `total`, which defaults to the table's length;
    the files hold all; reasons in `failure_lines`) that stays readable in `width` columns: paths below the
    folder all the photos share (named in the title), and the box only where there is room for it."""
    rows = table.head(limit)
    total = len(table) if total is None else total
    folder = _shared_folder([str(p) for p in rows["path"]])
    title = f"{total} rows" + (f" (first {len(rows)})" if total > len(rows) else "")
    named = min(folder, os.path.relpath(folder), key=len) if folder else ""  # the shorter way to say it
    shown = Table(title=title + (f" in {named}" if folder else ""), title_justify="left")
    columns = ["path", "face", "age", "mean ± std", "score", *(["box"] if width >= _BOX_WIDTH else []),
               "status"]
    for name in columns:
        shown.add_column(name, justify="left" if name in ("path", "status") else "right",
                         overflow="fold" if name == "path" else "ellipsis", no_wrap=name != "path")
    for row in rows.itertuples(index=False):
        ok = row.status == "ok"
        cells = [os.path.relpath(row.path, folder) if folder else str(row.path),
                 "" if pd.isna(row.face) else str(row.face), f"{row.pred:.0f}" if ok else "",
                 f"{row.mean:.1f} ± {row.std:.1f}" if ok else "",
                 "" if pd.isna(row.score) else f"{row.score:.3f}"]
        if "box" in columns:
            cells.append("" if pd.isna(row.box_x1) else ",".join(f"{v:.0f}" for v in row[4:8]))
        shown.add_row(*cells, row.status, style=None if ok else "yellow")
    return shown


def _shared_folder(paths: list[str]) -> str:
    """The folder every one of `paths` lies in ("" when they share none, or it is the working directory)."""
    if not paths:
        return ""
    try:
        common = os.path.commonpath([os.path.dirname(p) or "." for p in paths])
    except ValueError:  # absolute and relative paths mixed
        return ""
    return "" if common in ("", ".") else common


def failure_lines(table: pd.DataFrame) -> list[str]:
    """One line per row without a prediction: the reason (which names the file)."""
    bad = table[table["status"] != "ok"]
    return [f"{row.status}: {row.error if str(row.path) in str(row.error) else f'{row.path}: {row.error}'}"
            for row in bad.itertuples(index=False)]
