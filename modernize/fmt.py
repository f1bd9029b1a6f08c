"""The one number formatter of every report, comparison and reproduction check.

Every shown number is first cut to the six significant digits its CSV file holds, then rounded
half up: the digits a reader sees in ``table.md``, the page, the LaTeX table and the terminal
are the digits of ``table.csv`` rounded by hand, and a number never reads 73.05 in one place
and 73.04 in another (a binary float such as 73.04499999... rounds down, its CSV text up).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CSV_FLOAT = "%.6g"
"""How every CSV of a report writes a float (pandas ``float_format``)."""


def _decimal(x: Any) -> Decimal | None:
    """The value as its CSV text says it (6 significant digits); None when there is no finite number."""
    try:
        v = float(x)
    except (TypeError, ValueError, OverflowError):
        return None
    return Decimal(CSV_FLOAT % v) if math.isfinite(v) else None


def fixed(x: Any, digits: int = 2, *, signed: bool = False, empty: str = "") -> str:
    """``x`` with ``digits`` decimals (``+`` in front when ``signed``); ``empty`` when not a number."""
    d = _decimal(x)
    if d is None:
        return empty
    q = d.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    return format(q, "+f" if signed else "f")


def significant(x: Any, digits: int = 3, *, empty: str = "") -> str:
    """``x`` with ``digits`` significant digits (throughput, small GMACs)."""
    d = _decimal(x)
    if d is None:
        return empty
    if d == 0:
        return "0"
    q = d.quantize(Decimal(1).scaleb(d.adjusted() - digits + 1), rounding=ROUND_HALF_UP)
    return format(float(q), f".{digits}g")


def gmacs(x: Any) -> str:
    """GMACs with three significant digits at any scale (0.0123 at 28 px, 4.09 at 224 px)."""
    d = _decimal(x)
    if d is None:
        return ""
    return fixed(x, 2) if d >= 1 else significant(x, 3)


def mean_spread(mean: Any, std: Any, n: int, *, pm: str = "±", of: int | None = None) -> str:
    """``76.65 ± 1.05 (n=2)``, the one way a per-step mean over seeds is shown (the spread only
    from two seeds on); ``(n=1/2)`` when ``of`` seeds were asked for and fewer finished."""
    text = fixed(mean)
    if n >= 2:
        text += f" {pm} {fixed(std)}"
    return text + f" (n={n}{'' if of is None or n == of else '/' + str(of)})"


__all__ = ["CSV_FLOAT", "fixed", "gmacs", "mean_spread", "significant"]
