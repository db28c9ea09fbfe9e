"""How numbers and tables look in every eval output: a number, a percentage, a Markdown table, a rich table.

One definition of each, so report.md, the comparison section and the console tables cannot drift apart.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

from rich.table import Table

MISSING = "—"  # a value the table cannot give (no crowd std, an empty age group)


def num(value: float | None, digits: int = 2) -> str:
    """`value` with `digits` decimals; MISSING for None, NaN or infinity."""
    return MISSING if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def pct(value: float | None, digits: int = 1) -> str:
    """A fraction as a percentage with `digits` decimals (0.5 → "50.0 %"); MISSING when not finite."""
    return MISSING if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f} %"


def one_line(text: str) -> str:
    """`text` with its line breaks as spaces: a Markdown heading or table cell must stay on its line."""
    return " ".join(str(text).splitlines())


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table and a blank line after it: a `|` in a cell is escaped and a line break
    becomes a space (a run named with one would otherwise end its row)."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(one_line(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows), ""]


def rich_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]],
               text_columns: Collection[int] = (0,)) -> Table:
    """A console table: the `text_columns` (labels, verdicts) left-aligned, numbers right-aligned; cells
    wrap rather than being cut, since labels are paths' names."""
    table = Table(title=title)
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i in text_columns else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table
