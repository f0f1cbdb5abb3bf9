"""Fixed-width number formatting for the panes.

Every cell is rendered to a known width so a changing value never changes a column's width
(a width change forces DataTable to re-measure every row, which is what makes tables flicker).
Signs are always printed on P&L so meaning survives a monochrome terminal.
"""

from __future__ import annotations

import datetime as dt
import math
import re

DASH = "–"


def _finite(v: float | None) -> bool:
    return v is not None and isinstance(v, int | float) and math.isfinite(v)


def num(v: float | None, decimals: int = 2) -> str:
    if not _finite(v):
        return DASH
    return f"{v:,.{decimals}f}"


def qty(v: float | None) -> str:
    if not _finite(v):
        return DASH
    assert v is not None
    return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"


def signed_qty(v: float | None) -> str:
    if not _finite(v):
        return DASH
    assert v is not None
    return f"{v:+,.0f}" if float(v).is_integer() else f"{v:+,.2f}"


def money(v: float | None, decimals: int = 2) -> str:
    return num(v, decimals)


def pnl(v: float | None, decimals: int = 2) -> str:
    """P&L always carries its sign: '+0.00' reads differently from '-0.00' without colour."""
    if not _finite(v):
        return DASH
    assert v is not None
    if abs(v) < 0.5 * 10**-decimals:
        v = 0.0
    return f"{v:+,.{decimals}f}"


def short_money(v: float | None) -> str:
    """1,234,567 -> 1.23M; used where a column has only a few cells to spare."""
    if not _finite(v):
        return DASH
    assert v is not None
    a = abs(v)
    for div, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.2f}{suffix}"
    return f"{v:.0f}"


def pct(v: float | None, decimals: int = 1) -> str:
    if not _finite(v):
        return DASH
    return f"{v:.{decimals}f}%"


def age(seconds: float | None) -> str:
    if not _finite(seconds):
        return DASH
    assert seconds is not None
    s = max(int(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"


def fit(text: str, width: int) -> str:
    """Cut to width with an ellipsis so long symbols (option keys) never widen a column."""
    if len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def tone(v: float | None, eps: float = 1e-9) -> str:
    """The semantic class of a signed number: up, down or flat."""
    if not _finite(v):
        return "flat"
    assert v is not None
    if v > eps:
        return "up"
    if v < -eps:
        return "down"
    return "flat"


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_OPTION = re.compile(
    r"^(?P<und>\S+) (?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2}) (?P<r>[CP])(?P<k>[\d.]+)$"
)


def _third_friday(year: int, month: int) -> int:
    return 15 + (4 - dt.date(year, month, 15).weekday()) % 7


def contract(key: str) -> str:
    """A contract's short name that keeps what tells contracts apart: expiry, strike, right.

    ``AAPL 20261218 C200`` -> ``AAPL 26DEC 200C`` (a standard monthly expiry, the third
    Friday); a weekly keeps its day: ``AAPL 20261204 P197.5`` -> ``AAPL 26DEC04 197.5P``.
    Anything that is not an option key is returned as it is.
    """
    m = _OPTION.match(key)
    if m is None:
        return key
    y, mo, d = int(m["y"]), int(m["m"]), int(m["d"])
    if not 1 <= mo <= 12:
        return key
    try:
        monthly = d == _third_friday(y, mo)
    except ValueError:
        return key
    day = "" if monthly else f"{d:02d}"
    return f"{m['und']} {y % 100:02d}{_MONTHS[mo - 1]}{day} {m['k']}{m['r']}"
