"""Reading a CSV a user can edit (a reference's ``seeds.csv`` and ``table.csv``, ``bench.csv``, a
paper table): every checked cell is parsed and validated, so a number is never dropped, shown
as ``inf`` or counted twice. A bad cell is one ``ConfigError`` line naming the file, the line
and what would be valid.

Each table reader declares its columns (:class:`Column`) and its key; :func:`read_checked`
returns the table with the checked columns as floats (NaN only where a column allows a blank).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Column:
    """One column's rule: ``number`` cells are finite floats in ``[low, high]``; ``whole`` cells
    are whole numbers in ``[low, high]``; ``text`` cells are non-empty strings."""

    name: str
    kind: str = "number"
    low: float | None = None
    high: float | None = None
    blank: bool = False
    """An empty cell is allowed (read as NaN): a figure that does not exist, e.g. one seed's std."""
    required: bool = True
    """The column must be present (an optional one is checked when present)."""

    def valid(self) -> str:
        """What a valid cell is, in words (the end of an error line)."""
        what = {"number": "a finite number", "whole": "a whole number", "text": "a non-empty text"}[self.kind]
        if self.low is not None and self.high is not None:
            what += f" in {self.low:g}..{self.high:g}"
        elif self.low is not None:
            what += f" >= {self.low:g}"
        return what + (" or empty" if self.blank else "")


PERCENT = {"low": 0.0, "high": 100.0}
"""Accuracy columns (top-1, top-5): percentages."""

BENCH_RULES = (Column("step", "text"), Column("gmacs", low=0.0, blank=True, required=False),
               Column("infer_img_s", low=0.0, blank=True, required=False),
               Column("train_img_s", low=0.0, blank=True, required=False))
"""bench.csv, as the report reads it (a re-run of ``bench`` appends rows: no key)."""
REPORT_TABLE_RULES = (Column("step", "text"), Column("n", "whole", low=0), Column("top1_mean", **PERCENT, blank=True),
                      Column("top1_std", low=0.0, blank=True, required=False))
"""A written report's table.csv (``report --page-only`` rebuilds a page from it)."""
PAPER_RULES = (Column("row", "text"), Column("paper_top1", **PERCENT, blank=True, required=False),
               Column("paper_top1_std", low=0.0, blank=True, required=False),
               Column("paper_gflops", low=0.0, blank=True, required=False))
"""A paper table (``paper = ...`` of a roadmap): one row per paper row."""


def where(index: int) -> str:
    """A data row as a user finds it: ``row 3 (line 4)`` (line 1 is the header)."""
    return f"row {int(index) + 1} (line {int(index) + 2})"


def _cell(raw: str, col: Column) -> float | str | None:
    """The parsed cell, or None when it breaks the column's rule."""
    text = raw.strip()
    if text == "":
        return math.nan if col.blank else None
    if col.kind == "text":
        return text
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or (col.kind == "whole" and not value.is_integer()):
        return None
    if (col.low is not None and value < col.low) or (col.high is not None and value > col.high):
        return None
    return value


def read_checked(path: Path, what: str, columns: Sequence[Column], key: Sequence[str] = ()) -> pd.DataFrame:
    """``path`` with every cell of ``columns`` validated and parsed; rows that repeat ``key``
    are refused (a duplicated (step, seed) would count one seed twice)."""
    import pandas as pd  # here: a roadmap's paper table is checked without importing pandas up front

    path = Path(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # ParserError, EmptyDataError, UnicodeDecodeError are ValueErrors
        raise ConfigError(f"{path}: cannot read the {what}: {type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0]}"[:400]) from None
    missing = [c.name for c in columns if c.required and c.name not in raw.columns]
    if missing:
        raise ConfigError(f"{path}: the {what} has no column(s) {', '.join(missing)} "
                          f"(has: {', '.join(map(str, raw.columns)) or 'none'})")
    out = raw.copy()
    for col in columns:
        if col.name not in raw.columns:
            continue
        parsed = []
        for i, cell in raw[col.name].items():
            value = _cell(str(cell), col)
            if value is None:
                raise ConfigError(f"{path}: {where(int(i))}: {col.name} = {str(cell)!r} is not valid "
                                  f"(needs {col.valid()})")
            parsed.append(value)
        out[col.name] = pd.Series(parsed, index=raw.index, dtype=object if col.kind == "text" else float)
    if key:
        _refuse_duplicates(path, out, list(key))
    return out


def _refuse_duplicates(path: Path, table: pd.DataFrame, key: list[str]) -> None:
    dup = table.duplicated(subset=key, keep=False)
    if dup.any():
        rows = table[dup]
        first = tuple(rows.iloc[0][key])
        found = [where(int(i)) for i, r in rows.iterrows() if tuple(r[key]) == first]
        shown = ", ".join(f"{k} {_short(v)}" for k, v in zip(key, first))
        raise ConfigError(f"{path}: {' and '.join(found)} repeat {shown}; "
                          f"each ({', '.join(key)}) may appear once")


def _short(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


__all__ = ["BENCH_RULES", "PAPER_RULES", "PERCENT", "REPORT_TABLE_RULES", "Column", "where", "read_checked"]
