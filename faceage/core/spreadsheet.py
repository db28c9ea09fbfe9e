"""CSV cells a spreadsheet will not run: text starting with =, +, -, @, a tab or a carriage return is written
with a leading apostrophe (OWASP's rule against CSV injection), and read back without it, so a photo named
`=HYPERLINK(…).jpg` stays that name for every stage while a spreadsheet shows it as text."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the tables come from callers: importing pandas here would slow every command's start
    import pandas as pd

RISKY = ("=", "+", "-", "@", "\t", "\r")


def escape_text(text: str) -> str:
    """`text` as a CSV cell a spreadsheet shows and never runs."""
    return "'" + text if text[:1] in RISKY else text


def unescape_text(text: str) -> str:
    """What `escape_text` was given."""
    return text[1:] if text[:1] == "'" and text[1:2] in RISKY and text[1:2] != "" else text


def escape_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every text cell escaped (numbers, even negative ones, are numbers, not formulas)."""
    changed = {}
    for name in _text_columns(table):
        column = table[name]
        risky = column.str[:1].isin(RISKY).fillna(False).astype(bool)
        if risky.any():
            changed[name] = column.where(~risky, "'" + column.astype(str))
    return table.assign(**changed) if changed else table


def unescape_cells(table: pd.DataFrame) -> pd.DataFrame:
    """The table with every text cell as it was before `escape_cells`."""
    changed = {}
    for name in _text_columns(table):
        column = table[name]
        escaped = ((column.str[:1] == "'") & column.str[1:2].isin(RISKY)).fillna(False).astype(bool)
        if escaped.any():
            changed[name] = column.where(~escaped, column.str[1:])
    return table.assign(**changed) if changed else table


def _text_columns(table: pd.DataFrame) -> list[str]:
    """The columns holding text (numbers are left alone: -3.5 is a number, not a formula)."""
    from pandas.api.types import is_string_dtype

    return [str(name) for name in table.columns
            if table[name].dtype == object or is_string_dtype(table[name].dtype)]
