"""The one bar shape, and what keeps data in it.

A ``DatetimeIndex`` named ``ts``, tz-aware UTC at nanosecond resolution, and float64 columns
``open, high, low, close, volume``, sorted and unique (DESIGN.md principle 7).
:func:`validate_bars` enforces it at every boundary; the helpers here build, slice and merge
frames of that shape, and name bar sizes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
INDEX_NAME = "ts"


class DataError(ValueError):
    """Bad market data, phrased for the operator: where, which row, what is wrong."""

    def __init__(
        self,
        where: str,
        problem: str,
        *,
        line: int | None = None,
        row: int | None = None,
        ts: Any = None,
    ):
        self.where = where
        self.problem = problem
        self.line = line
        self.row = row
        self.ts = ts
        if line is not None:
            msg = f"{where}: line {line}: {problem}"
        elif row is not None:
            at = f" ({ts})" if ts is not None else ""
            msg = f"{where}: row {row}{at}: {problem}"
        else:
            msg = f"{where}: {problem}"
        super().__init__(msg)


# ---------------------------------------------------------------------------- bar sizes

_UNITS = {
    "s": "s", "sec": "s", "secs": "s", "second": "s", "seconds": "s",
    "m": "m", "min": "m", "mins": "m", "minute": "m", "minutes": "m", "t": "m",
    "h": "h", "hr": "h", "hour": "h", "hours": "h",
    "d": "d", "day": "d", "days": "d", "daily": "d",
    "w": "w", "wk": "w", "week": "w", "weeks": "w", "weekly": "w",
}  # fmt: skip
_BAR_SIZE = re.compile(r"^\s*(\d*)\s*([a-z]+)\s*$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def canonical_bar_size(bar_size: str) -> str:
    """``"5 mins"``, ``"5min"``, ``"5m"`` -> ``"5m"``; ``"1 day"``/``"1D"`` -> ``"1d"`` (IB's spellings too)."""
    m = _BAR_SIZE.match(str(bar_size).lower())
    unit = _UNITS.get(m[2]) if m else None
    if m is None or unit is None or (m[1] and int(m[1]) <= 0):
        raise ValueError(f"unknown bar size {bar_size!r} (use e.g. 1s, 5m, 1h, 1d, 1w)")
    return f"{int(m[1] or 1)}{unit}"


def bar_timedelta(bar_size: str) -> pd.Timedelta:
    c = canonical_bar_size(bar_size)
    return pd.Timedelta(seconds=int(c[:-1]) * _SECONDS[c[-1]])


# ---------------------------------------------------------------------------- validation


def empty_bars() -> pd.DataFrame:
    idx = pd.DatetimeIndex([], dtype="datetime64[ns, UTC]", name=INDEX_NAME)
    return pd.DataFrame({c: np.array([], dtype=np.float64) for c in BAR_COLUMNS}, index=idx)


def _bad_row_masks(
    o: np.ndarray, h: np.ndarray, lo: np.ndarray, c: np.ndarray, v: np.ndarray
) -> list[tuple[np.ndarray, str]]:
    """(mask, problem) pairs in the order a row's first problem is reported."""
    with np.errstate(invalid="ignore"):
        return [
            (~np.isfinite(o) | (o <= 0), "open"),
            (~np.isfinite(h) | (h <= 0), "high"),
            (~np.isfinite(lo) | (lo <= 0), "low"),
            (~np.isfinite(c) | (c <= 0), "close"),
            (~np.isfinite(v), "volume"),
            (h < lo, "high < low"),
            (h < np.maximum(o, c), "high below open/close"),
            (lo > np.minimum(o, c), "low above open/close"),
            (v < 0, "negative volume"),
        ]


def describe_problem(problem: str, i: int, cols: dict[str, np.ndarray]) -> str:
    o, h, lo, c, v = (cols[k][i] for k in BAR_COLUMNS)
    if problem in PRICE_COLUMNS or problem == "volume":
        x = cols[problem][i]
        if not np.isfinite(x):
            return f"{problem} is missing or not a number"
        return f"{problem} must be > 0, got {x:g}"
    if problem == "high < low":
        return f"high < low ({h:g} < {lo:g})"
    if problem == "high below open/close":
        return f"high {h:g} is below open/close ({o:g}/{c:g})"
    if problem == "low above open/close":
        return f"low {lo:g} is above open/close ({o:g}/{c:g})"
    if problem == "negative volume":
        return f"negative volume {v:g}"
    return problem


def validate_bars(df: pd.DataFrame, where: str) -> pd.DataFrame:
    """Return ``df`` in the one bar shape or raise :class:`DataError` naming ``where``, row and problem.

    Harmless differences are converted (another time zone or resolution, integer columns,
    column case); everything else (naive times, missing columns, impossible prices, unsorted
    or duplicate timestamps) is an error. Extra columns are kept after the bar columns.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(where, f"expected a DataFrame of bars, got {type(df).__name__}")
    idx = df.index
    if not isinstance(idx, pd.DatetimeIndex):
        raise DataError(where, f"index must be a DatetimeIndex, got {type(idx).__name__}")
    if idx.tz is None:
        raise DataError(where, "index has no time zone (localize it, e.g. to the exchange's)")
    if idx.hasnans:
        i = int(np.flatnonzero(idx.isna())[0])
        raise DataError(where, "missing timestamp", row=i)
    rename = {
        c: str(c).strip().lower() for c in df.columns if str(c).strip().lower() in BAR_COLUMNS
    }
    if rename:
        df = df.rename(columns=rename)
    missing = [c for c in BAR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(where, f"missing column(s) {', '.join(missing)}")
    if df.columns.duplicated().any():
        dup = df.columns[df.columns.duplicated()][0]
        raise DataError(where, f"duplicate column {dup!r}")
    cols: dict[str, np.ndarray] = {}
    for c in BAR_COLUMNS:
        s = df[c]
        if s.dtype != np.float64:
            try:
                s = s.astype(np.float64)
            except (TypeError, ValueError):
                num = pd.to_numeric(s, errors="coerce")
                i = int(np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())[0])
                raise DataError(
                    where, f"{c} is not a number: {s.iloc[i]!r}", row=i, ts=idx[i]
                ) from None
        cols[c] = s.to_numpy(dtype=np.float64, copy=False)
    bad = _first_bad_row(cols)
    if bad is not None:
        i, problem = bad
        raise DataError(where, describe_problem(problem, i, cols), row=i, ts=idx[i])
    new_idx = idx.tz_convert("UTC").as_unit("ns")
    if len(new_idx) > 1:
        steps = np.diff(new_idx.asi8)
        if (steps <= 0).any():
            i = int(np.flatnonzero(steps <= 0)[0]) + 1
            what = "duplicate timestamp" if steps[i - 1] == 0 else "timestamps not in order"
            raise DataError(where, what, row=i, ts=new_idx[i])
    extras = [c for c in df.columns if c not in BAR_COLUMNS]
    out = pd.DataFrame({c: cols[c] for c in BAR_COLUMNS}, index=new_idx, copy=False)
    for c in extras:
        out[c] = df[c].to_numpy()
    out.index.name = INDEX_NAME
    return out


def _first_bad_row(cols: dict[str, np.ndarray]) -> tuple[int, str] | None:
    first: tuple[int, str] | None = None
    for mask, problem in _bad_row_masks(*(cols[c] for c in BAR_COLUMNS)):
        hits = np.flatnonzero(mask)
        if len(hits) and (first is None or hits[0] < first[0]):
            first = (int(hits[0]), problem)
    return first


def bar_index(df: pd.DataFrame) -> pd.DatetimeIndex:
    """The time index of a frame in the one bar shape, typed as such (pandas types every
    frame's index as a plain Index; :func:`validate_bars` is what makes it a DatetimeIndex)."""
    return cast(pd.DatetimeIndex, df.index)


def bars_from_arrays(ts: np.ndarray, arrays: Sequence[np.ndarray] | np.ndarray) -> pd.DataFrame:
    """Bars from int64 UTC nanoseconds and the five columns (a list, or a 2-D array by column)."""
    idx = pd.DatetimeIndex(np.asarray(ts, dtype=np.int64).view("datetime64[ns]"), name=INDEX_NAME)
    cols = list(arrays) if not isinstance(arrays, np.ndarray) else [arrays[:, k] for k in range(5)]
    data = {c: np.ascontiguousarray(cols[k], dtype=np.float64) for k, c in enumerate(BAR_COLUMNS)}
    return pd.DataFrame(data, index=idx.tz_localize("UTC"), copy=False)


def slice_bars(df: pd.DataFrame, start: Any = None, end: Any = None) -> pd.DataFrame:
    """Rows with ``start <= ts < end``; naive bounds are read as UTC."""
    if start is None and end is None:
        return df
    idx = df.index
    lo = 0 if start is None else int(idx.searchsorted(to_utc(start), side="left"))
    hi = len(idx) if end is None else int(idx.searchsorted(to_utc(end), side="left"))
    return df.iloc[lo:hi]


def to_utc(t: Any) -> pd.Timestamp:
    """A timestamp-like (epoch seconds, text, datetime) as a UTC ``Timestamp``; naive means UTC."""
    ts = pd.Timestamp(t, unit="s") if isinstance(t, int | float) else pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def concat_bars(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Merge bar frames, later frames winning on equal timestamps."""
    fs = [f for f in frames if len(f)]
    if not fs:
        return empty_bars()
    merged = pd.concat(fs)
    return merged[~merged.index.duplicated(keep="last")].sort_index(kind="stable")
