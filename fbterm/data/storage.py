"""Bars on disk: the one bar shape, CSV loading that accepts what people have, atomic saves.

The one shape (DESIGN.md principle 7): a ``DatetimeIndex`` named ``ts``, tz-aware UTC at
nanosecond resolution, and float64 columns ``open, high, low, close, volume``, sorted and
unique. :func:`validate_bars` enforces it at every boundary.

Loading is tuned for the common case (ISO or epoch timestamps, clean numbers): one pandas C
parse, vectorised checks, no per-row Python. A successful clean load is also written to a
small binary cache next to the CSV (``.<name>.fbcache.npz``, keyed by the file's size, mtime
and inode), so a second load of a big file costs a few milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
INDEX_NAME = "ts"
BadRows = Literal["error", "drop", "repair"]
_CACHE_VERSION = 2
_MAX_EXAMPLES = 5


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


def _describe(problem: str, i: int, cols: dict[str, np.ndarray]) -> str:
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
        raise DataError(where, _describe(problem, i, cols), row=i, ts=idx[i])
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


# ---------------------------------------------------------------------------- load report


@dataclass
class LoadReport:
    """What :meth:`DataStorage.load_from_csv` did to a file.

    ``dropped`` and ``repaired`` count rows by problem; ``examples`` holds the first few
    bad rows as ``"line 7: high < low (9.5 < 10)"`` (line numbers count the header as 1).
    """

    path: str
    rows_read: int = 0
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    repaired: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    sorted: bool = False  # rows were out of time order and have been sorted
    from_cache: bool = False

    @property
    def bad_rows(self) -> int:
        return sum(self.dropped.values()) + sum(self.repaired.values())

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        if not self.bad_rows:
            return "no bad rows"
        parts = [f"dropped {n} ({why})" for why, n in self.dropped.items()]
        parts += [f"repaired {n} ({why})" for why, n in self.repaired.items()]
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "rows_read": self.rows_read, "rows": self.rows,
            "dropped": self.dropped, "repaired": self.repaired, "examples": self.examples,
            "sorted": self.sorted,
        }  # fmt: skip


class StoredSeries(NamedTuple):
    """One file in the storage layout, as :meth:`DataStorage.list` reports it."""

    symbol: str
    bar_size: str
    rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None


# ---------------------------------------------------------------------------- CSV parsing

_DATE_NAMES = ("ts", "date", "datetime", "time", "timestamp", "date_time", "dt")
_ALIASES = {
    "open": "open", "o": "open", "high": "high", "h": "high", "low": "low", "l": "low",
    "close": "close", "c": "close", "last": "close", "volume": "volume", "vol": "volume", "v": "volume",
    "adjclose": "adj_close", "adjustedclose": "adj_close",
}  # fmt: skip
_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")
_TZ_SUFFIX = re.compile(r"(Z|[+-]\d\d:?\d\d|UTC|GMT)\s*$", re.IGNORECASE)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", str(name).strip().lower())


def _map_columns(header: Sequence[str], where: str) -> tuple[str | list[str], dict[str, str]]:
    """The date column (or [date, time] pair) and a raw-name -> bar-column mapping."""
    normed = [_norm(h) for h in header]
    date_col: str | list[str] | None = None
    if "date" in normed and "time" in normed:
        date_col = [header[normed.index("date")], header[normed.index("time")]]
    else:
        for name in _DATE_NAMES:
            key = _norm(name)
            if key in normed:
                date_col = header[normed.index(key)]
                break
    if date_col is None:
        date_col = header[0]
    used = set(date_col) if isinstance(date_col, list) else {date_col}
    mapping: dict[str, str] = {}
    for raw, n in zip(header, normed, strict=True):
        target = _ALIASES.get(n)
        if raw in used or target is None:
            continue
        if target in mapping.values():
            if len(n) == 1:  # a one-letter alias never overrides a full name
                continue
            mapping = {k: t for k, t in mapping.items() if t != target or len(_norm(k)) > 1}
            if target in mapping.values():
                raise DataError(where, f"duplicate column for {target}: {raw!r}", line=1)
        mapping[raw] = target
    missing = [c for c in BAR_COLUMNS if c not in mapping.values()]
    if missing:
        found = ", ".join(map(str, header))
        raise DataError(where, f"missing column(s) {', '.join(missing)} (found: {found})", line=1)
    return date_col, mapping


def parse_timestamps(raw: pd.Series | np.ndarray, timezone: str) -> pd.DatetimeIndex:
    """Timestamps as UTC nanoseconds; unparsable values become NaT.

    Numbers are epoch seconds (or ms/us/ns by magnitude; eight-digit integers are YYYYMMDD);
    text is ISO 8601 (with or without time, offset or ``Z``), else any format pandas infers.
    Times without a zone are in ``timezone``.
    """
    s = pd.Series(raw) if not isinstance(raw, pd.Series) else raw
    if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        return _parse_numeric_times(s.to_numpy(dtype=np.float64))
    s = s.astype(object)
    first = _first_text(s)
    aware = bool(first is not None and _TZ_SUFFIX.search(first.strip()))
    idx = _to_datetime(s, aware, "ISO8601")
    valid = s.notna().to_numpy() if idx.hasnans else np.ones(len(s), dtype=bool)
    if first is not None and idx.hasnans and np.asarray(idx.isna())[valid].all():
        # Not ISO at all: maybe "01/02/2020" or "20200102  09:30:00"; let pandas infer it.
        stripped = s.where(~s.notna(), s.astype(str).str.replace(r"\s+", " ", regex=True))
        alt = _to_datetime(stripped, aware, None)
        if alt.notna().sum() > idx.notna().sum():
            idx = alt
    if not aware:
        idx = idx.tz_localize(timezone, ambiguous="NaT", nonexistent="NaT").tz_convert("UTC")
    return idx.as_unit("ns")


def _first_text(s: pd.Series) -> str | None:
    """The first non-blank string; scans in slices so a long column is not walked in Python."""
    for start in range(0, len(s), 1000):
        for x in s.iloc[start : start + 1000].tolist():
            if isinstance(x, str) and x.strip():
                return x
    return None


def _to_datetime(s: pd.Series, aware: bool, fmt: str | None) -> pd.DatetimeIndex:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = pd.to_datetime(s, format=fmt, errors="coerce", utc=aware, cache=False)
        except (ValueError, TypeError):
            out = pd.to_datetime(s, format=fmt, errors="coerce", utc=True)
    idx = pd.DatetimeIndex(out)
    if not aware and idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx


def _parse_numeric_times(x: np.ndarray) -> pd.DatetimeIndex:
    finite = x[np.isfinite(x)]
    big = float(np.abs(finite).max()) if len(finite) else 0.0
    if (
        len(finite)
        and np.all((finite >= 1e7) & (finite < 1e8))
        and np.all(finite == np.floor(finite))
    ):
        txt = pd.Series(np.where(np.isfinite(x), x, 0).astype(np.int64).astype(str))
        idx = pd.DatetimeIndex(pd.to_datetime(txt, format="%Y%m%d", errors="coerce"))
        idx = idx.where(np.isfinite(x), pd.NaT)
        return idx.tz_localize("UTC").as_unit("ns")
    scale = 1e9 if big < 1e11 else 1e6 if big < 1e14 else 1e3 if big < 1e17 else 1.0
    with np.errstate(invalid="ignore"):
        ns = np.where(np.isfinite(x), np.round(x * scale), np.nan)
    ok = np.isfinite(ns) & (np.abs(ns) < 9.2e18)
    vals = np.where(ok, ns, 0).astype(np.int64)
    vals[~ok] = np.iinfo(np.int64).min  # NaT
    return pd.DatetimeIndex(vals.view("datetime64[ns]")).tz_localize("UTC")


def _parse_frame(
    path: Path,
    *,
    on_bad_rows: BadRows,
    timezone: str,
    adj_close: bool,
) -> tuple[pd.DataFrame, LoadReport]:
    where = str(path)
    report = LoadReport(path=where)
    header = _read_header(path, where)
    date_col, mapping = _map_columns(header, where)
    if adj_close and "adj_close" not in mapping.values():
        raise DataError(where, "adj_close requested but the file has no Adj Close column", line=1)
    date_cols = date_col if isinstance(date_col, list) else [date_col]
    usecols = [*date_cols, *(k for k, t in mapping.items() if t != "adj_close" or adj_close)]
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", pd.errors.DtypeWarning)
            # usecols costs ~40% of the parse, so it is only passed when there is something to skip.
            raw = pd.read_csv(
                path, engine="c", usecols=usecols if len(usecols) < len(header) else None,
                skip_blank_lines=False, dtype={c: object for c in date_cols}, encoding="utf-8-sig",
            )  # fmt: skip
    except pd.errors.ParserError as e:
        m = re.search(r"line (\d+)", str(e))
        line = int(m[1]) if m else None
        saw = re.search(r"Expected (\d+) fields.*saw (\d+)", str(e))
        what = f"expected {saw[1]} fields, found {saw[2]}" if saw else "malformed CSV"
        raise DataError(where, what, line=line) from None
    except UnicodeDecodeError as e:
        raise DataError(where, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    n = len(raw)
    report.rows_read = n
    lines = np.arange(2, n + 2)

    if isinstance(date_col, list):
        d, t = (raw[c].astype("string").fillna("") for c in date_col)
        traw = (d + " " + t).str.strip().replace("", np.nan).astype(object)
    else:
        traw = raw[date_col]
        first = _first_text(traw)
        if first is not None and _NUMBER.match(first.strip()):
            # Epoch numbers came in as text because of the object dtype.
            num = pd.to_numeric(traw, errors="coerce")
            if num.notna().sum() == traw.notna().sum() and traw.notna().any():
                traw = num
    idx = parse_timestamps(traw, timezone)

    # Blank lines (all fields empty) are skipped silently, as a spreadsheet would. Checking the
    # date text for NaN is costly, so it is done only where the first price is missing.
    all_empty = np.zeros(n, dtype=bool)
    first_px = raw[next(iter(mapping))]
    maybe = first_px.isna().to_numpy() if first_px.dtype.kind not in "iu" else all_empty
    if maybe.any():
        all_empty = raw.isna().all(axis=1).to_numpy()

    cols: dict[str, np.ndarray] = {}
    not_numeric: dict[str, np.ndarray] = {}
    for rawname, target in mapping.items():
        if target == "adj_close" and not adj_close:
            continue
        s = raw[rawname]
        if s.dtype.kind in "fiu":
            arr = s.to_numpy(dtype=np.float64)
            not_numeric[target] = np.zeros(n, dtype=bool)
        else:
            num = pd.to_numeric(s.astype(object), errors="coerce")
            arr = num.to_numpy(dtype=np.float64, na_value=np.nan)
            not_numeric[target] = num.isna().to_numpy() & s.notna().to_numpy()
        cols[target] = arr

    bad_date = idx.isna() & ~all_empty
    if adj_close:
        with np.errstate(invalid="ignore", divide="ignore"):
            factor = cols["adj_close"] / cols["close"]
        for c in PRICE_COLUMNS:
            cols[c] = cols[c] * factor

    keep = ~all_empty & ~bad_date
    problems: list[tuple[np.ndarray, str, str]] = []  # mask, key, kind ("drop" or "repair")
    first_err: tuple[int, str] | None = None

    def note(mask: np.ndarray, key: str, describe: Any) -> None:
        nonlocal first_err
        hits = np.flatnonzero(mask)
        if not len(hits):
            return
        if first_err is None or hits[0] < first_err[0]:
            first_err = (int(hits[0]), describe(int(hits[0])))
        for i in hits[:_MAX_EXAMPLES]:
            report.examples.append(f"line {lines[i]}: {describe(int(i))}")
        problems.append((mask, key, ""))

    def date_text(i: int) -> str:
        v = traw.iloc[i]
        return f"unparsable date {v!r}" if pd.notna(v) else "missing date"

    note(bad_date, "unparsable date", date_text)
    for c in BAR_COLUMNS:
        col_raw = raw[next(k for k, t in mapping.items() if t == c)]
        nn = not_numeric[c] & keep
        note(
            nn,
            f"non-numeric {c}",
            lambda i, c=c, col_raw=col_raw: f"{c} is not a number: {col_raw.iloc[i]!r}",
        )
        miss = ~np.isfinite(cols[c]) & ~not_numeric[c] & keep
        note(miss, f"missing {c}", lambda i, c=c: f"missing {c}")
    o, h, lo, c_, v = (cols[c] for c in BAR_COLUMNS)
    with np.errstate(invalid="ignore"):
        for col in PRICE_COLUMNS:
            x = cols[col]
            note(
                (x <= 0) & keep,
                f"{col} <= 0",
                lambda i, col=col: f"{col} must be > 0, got {cols[col][i]:g}",
            )
        valid_px = keep & np.isfinite(o) & np.isfinite(h) & np.isfinite(lo) & np.isfinite(c_)
        valid_px &= (o > 0) & (h > 0) & (lo > 0) & (c_ > 0)
        note((h < lo) & valid_px, "high < low", lambda i: _describe("high < low", i, cols))
        note(
            (h < np.maximum(o, c_)) & (h >= lo) & valid_px,
            "high below open/close",
            lambda i: _describe("high below open/close", i, cols),
        )
        note(
            (lo > np.minimum(o, c_)) & (h >= lo) & (h >= np.maximum(o, c_)) & valid_px,
            "low above open/close",
            lambda i: _describe("low above open/close", i, cols),
        )
        note((v < 0) & keep, "negative volume", lambda i: f"negative volume {v[i]:g}")

    # Duplicate timestamps among otherwise good rows: the last one wins.
    if on_bad_rows == "error" and first_err is not None:
        _raise_first(where, first_err, lines, problems, keep)

    if on_bad_rows == "repair":
        cols, repaired_masks, unrepairable = _repair(cols, keep)
        for key, mask in repaired_masks.items():
            if mask.any():
                report.repaired[key] = int(mask.sum())
        drop_mask = bad_date | unrepairable
        if bad_date.any():
            report.dropped["unparsable date"] = int(bad_date.sum())
        if unrepairable.any():
            report.dropped["unrepairable close"] = int(unrepairable.sum())
    else:
        drop_mask = np.zeros(n, dtype=bool)
        for mask, key, _ in problems:
            fresh = mask & ~drop_mask
            if fresh.any():
                report.dropped[key] = report.dropped.get(key, 0) + int(fresh.sum())
            drop_mask |= mask
    good = ~drop_mask & ~all_empty

    ts = idx.asi8
    arrays = [cols[c] for c in BAR_COLUMNS]
    glines = lines
    if not good.all():
        ts, glines = ts[good], lines[good]
        arrays = [a[good] for a in arrays]
    if len(ts) > 1 and (np.diff(ts) < 0).any():
        order = np.argsort(ts, kind="stable")
        ts, glines = ts[order], glines[order]
        arrays = [a[order] for a in arrays]
        report.sorted = True
    if len(ts) > 1:
        dup = np.zeros(len(ts), dtype=bool)
        dup[:-1] = ts[1:] == ts[:-1]
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            if on_bad_rows == "error":
                raise DataError(
                    where, f"duplicate timestamp {pd.Timestamp(ts[i], tz='UTC')} (again on line "
                    f"{glines[i + 1]}); load with on-bad-rows drop to keep the last", line=int(glines[i]),
                )  # fmt: skip
            for j in np.flatnonzero(dup)[:_MAX_EXAMPLES]:
                report.examples.append(
                    f"line {glines[j]}: duplicate timestamp (line {glines[j + 1]} kept)"
                )
            report.dropped["duplicate timestamp"] = int(dup.sum())
            ts = ts[~dup]
            arrays = [a[~dup] for a in arrays]
    report.rows = len(ts)
    report.examples.sort(key=lambda ex: int(ex.split()[1].rstrip(":")))
    del report.examples[_MAX_EXAMPLES * 2 :]
    return _frame(ts, arrays), report


def _frame(ts: np.ndarray, arrays: Sequence[np.ndarray] | np.ndarray) -> pd.DataFrame:
    """Bars from int64 UTC nanoseconds and the five columns (a list, or a 2-D array by column)."""
    idx = pd.DatetimeIndex(np.asarray(ts, dtype=np.int64).view("datetime64[ns]"), name=INDEX_NAME)
    cols = list(arrays) if not isinstance(arrays, np.ndarray) else [arrays[:, k] for k in range(5)]
    data = {c: np.ascontiguousarray(cols[k], dtype=np.float64) for k, c in enumerate(BAR_COLUMNS)}
    return pd.DataFrame(data, index=idx.tz_localize("UTC"), copy=False)


def _raise_first(
    where: str,
    first: tuple[int, str],
    lines: np.ndarray,
    problems: list[tuple[np.ndarray, str, str]],
    keep: np.ndarray,
) -> None:
    i, text = first
    total = np.zeros(len(lines), dtype=bool)
    for mask, _, _ in problems:
        total |= mask
    more = int(total.sum()) - 1
    tail = f"; {more} more bad row{'s' if more != 1 else ''}" if more > 0 else ""
    raise DataError(
        where,
        f"{text}{tail} (load with on-bad-rows drop or repair to skip them)",
        line=int(lines[i]),
    )


def _repair(
    cols: dict[str, np.ndarray], keep: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """Fix what can be fixed from the row itself (and the previous close); the rest is dropped.

    A bar without a usable close cannot be rebuilt and is dropped. A missing or non-positive
    open becomes the previous close (the bar's own close on the first row); high and low are
    widened to contain open and close; negative or missing volume becomes 0.
    """
    o, h, lo, c, v = (cols[k].copy() for k in BAR_COLUMNS)
    with np.errstate(invalid="ignore"):
        bad_c = ~(np.isfinite(c) & (c > 0))
        unrepairable = keep & bad_c
        ok_rows = keep & ~bad_c
        prev_close = pd.Series(np.where(ok_rows, c, np.nan)).shift(1).ffill().to_numpy()
        bad_o = ok_rows & ~(np.isfinite(o) & (o > 0))
        o[bad_o] = np.where(np.isfinite(prev_close[bad_o]), prev_close[bad_o], c[bad_o])
        bad_h = ok_rows & ~(np.isfinite(h) & (h > 0))
        bad_l = ok_rows & ~(np.isfinite(lo) & (lo > 0))
        h[bad_h] = np.maximum(o[bad_h], c[bad_h])
        lo[bad_l] = np.minimum(o[bad_l], c[bad_l])
        swapped = ok_rows & (h < lo)
        h[swapped], lo[swapped] = lo[swapped].copy(), h[swapped].copy()
        widen = ok_rows & ((h < np.maximum(o, c)) | (lo > np.minimum(o, c)))
        h = np.where(ok_rows, np.maximum(h, np.maximum(o, c)), h)
        lo = np.where(ok_rows, np.minimum(lo, np.minimum(o, c)), lo)
        bad_v = ok_rows & ~(np.isfinite(v) & (v >= 0))
        v[bad_v] = 0.0
    repaired = {
        "missing open": bad_o, "missing high/low": bad_h | bad_l, "high < low": swapped & ~widen,
        "high/low not containing open/close": widen, "bad volume": bad_v,
    }  # fmt: skip
    return {"open": o, "high": h, "low": lo, "close": c, "volume": v}, repaired, unrepairable


def _read_header(path: Path, where: str) -> list[str]:
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
    except FileNotFoundError:
        raise DataError(where, "file not found") from None
    except IsADirectoryError:
        raise DataError(where, "is a directory, not a CSV file") from None
    except UnicodeDecodeError as e:
        raise DataError(where, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise DataError(where, f"cannot read: {e.strerror}") from None
    if not first.strip():
        raise DataError(where, "file is empty (no header line)")
    # pandas names a blank header cell "Unnamed: <position>"; use the same name to select it.
    cells = [h.strip() for h in next(csv.reader([first]))]
    return [h or f"Unnamed: {i}" for i, h in enumerate(cells)]


# ---------------------------------------------------------------------------- binary cache


def _cache_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.fbcache.npz")


def _cache_key(path: Path, timezone: str, adj_close: bool) -> str:
    st = path.stat()
    return (
        f"v{_CACHE_VERSION}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{timezone}|{int(adj_close)}"
    )


def _cache_read(path: Path, key: str) -> tuple[pd.DataFrame, LoadReport] | None:
    cp = _cache_path(path)
    try:
        with np.load(cp, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            ts, data, meta = z["ts"], z["data"], json.loads(str(z["report"]))
    except (OSError, KeyError, ValueError):
        return None
    rep = LoadReport(**meta)
    rep.from_cache = True
    return _frame(ts, data), rep


def _cache_write(path: Path, key: str, df: pd.DataFrame, report: LoadReport) -> None:
    cp = _cache_path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=cp.name, suffix=".tmp", dir=cp.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f, key=np.array(key), ts=df.index.asi8,
                data=df[list(BAR_COLUMNS)].to_numpy(dtype=np.float64),
                report=np.array(json.dumps(report.to_dict())),
            )  # fmt: skip
        os.replace(tmp, cp)
    except OSError:
        # A read-only data folder just means no cache.
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)


# ---------------------------------------------------------------------------- CSV writing


def _format_times(idx: pd.DatetimeIndex) -> list[str]:
    ns = idx.tz_convert("UTC").as_unit("ns").asi8
    unit = "s"
    if len(ns) and (ns % 1_000_000_000).any():
        unit = "ms" if not (ns % 1_000_000).any() else "us" if not (ns % 1000).any() else "ns"
    txt = np.datetime_as_string(ns.view("datetime64[ns]").astype(f"datetime64[{unit}]"), unit=unit)
    return [t + "Z" for t in txt.tolist()]


def _format_column(s: pd.Series) -> list[str]:
    if s.dtype.kind == "f":
        # repr is the shortest text that reads back to the same float: round trips are exact.
        return ["" if x != x else repr(x) for x in s.tolist()]
    if s.dtype.kind in "iub":
        return list(map(str, s.tolist()))
    return [_csv_cell(x) for x in s.astype(object).tolist()]


def _csv_cell(x: Any) -> str:
    if x is None or (isinstance(x, float) and x != x) or x is pd.NA:
        return ""
    t = str(x)
    if any(ch in t for ch in ',"\n\r'):
        return '"' + t.replace('"', '""') + '"'
    return t


def write_csv_atomic(df: pd.DataFrame, path: Path) -> None:
    """Write bars as CSV through a temporary file and a rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = [*BAR_COLUMNS, *(c for c in df.columns if c not in BAR_COLUMNS)]
    header = ",".join([INDEX_NAME, *(_csv_cell(c) for c in columns)])
    fields = [_format_times(df.index), *(_format_column(df[c]) for c in columns)]
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(header + "\n")
            chunk = 200_000  # bounds the memory of the joined text
            for start in range(0, len(df), chunk):
                part = [col[start : start + chunk] for col in fields]
                f.write("\n".join(map(",".join, zip(*part, strict=True))))
                f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------------------- DataStorage


class DataStorage:
    """Bars as CSV files under ``data_dir``: one file per symbol and bar size (``AAPL/1d.csv``).

    ``timezone`` is the exchange time zone given to timestamps without one. ``cache`` turns
    the binary load cache on or off.
    """

    def __init__(
        self, data_dir: Path | str, timezone: str = "America/New_York", *, cache: bool = True
    ):
        self.data_dir = Path(data_dir).expanduser()
        self.timezone = timezone
        self.cache = cache
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DataStorage({str(self.data_dir)!r}, timezone={self.timezone!r})"

    @classmethod
    def from_config(cls, cfg: Any) -> DataStorage:
        """From a full :class:`fbterm.config.Config` (data dir and exchange time zone)."""
        return cls(cfg.data_dir, cfg.market.timezone)

    # -- single files --------------------------------------------------------------------
    def save_to_csv(self, df: pd.DataFrame, path: Path | str) -> Path:
        """Validate and write ``df`` atomically; returns the path written."""
        p = Path(path).expanduser()
        bars = validate_bars(df, str(p))
        write_csv_atomic(bars, p)
        if self.cache and list(bars.columns) == list(BAR_COLUMNS):
            rep = LoadReport(path=str(p), rows_read=len(bars), rows=len(bars))
            _cache_write(p, _cache_key(p, self.timezone, False), bars, rep)
        return p

    @overload
    def load_from_csv(
        self,
        path: Path | str,
        *,
        on_bad_rows: BadRows = ...,
        timezone: str | None = ...,
        adj_close: bool = ...,
        report: Literal[False] = ...,
        cache: bool | None = ...,
    ) -> pd.DataFrame: ...

    @overload
    def load_from_csv(
        self,
        path: Path | str,
        *,
        on_bad_rows: BadRows = ...,
        timezone: str | None = ...,
        adj_close: bool = ...,
        report: Literal[True],
        cache: bool | None = ...,
    ) -> tuple[pd.DataFrame, LoadReport]: ...

    def load_from_csv(
        self,
        path: Path | str,
        *,
        on_bad_rows: BadRows = "error",
        timezone: str | None = None,
        adj_close: bool = False,
        report: bool = False,
        cache: bool | None = None,
    ) -> pd.DataFrame | tuple[pd.DataFrame, LoadReport]:
        """Load a CSV of bars into the one shape.

        ``on_bad_rows``: ``"error"`` raises :class:`DataError` at the first bad row (file, line,
        problem); ``"drop"`` drops bad rows; ``"repair"`` fixes what it can and drops the rest.
        ``adj_close=True`` scales open/high/low/close by ``adj close / close``. With
        ``report=True`` returns ``(df, LoadReport)``.
        """
        if on_bad_rows not in ("error", "drop", "repair"):
            raise ValueError(
                f"on_bad_rows must be 'error', 'drop' or 'repair', got {on_bad_rows!r}"
            )
        p = Path(path).expanduser()
        tz = timezone or self.timezone
        use_cache = self.cache if cache is None else cache
        key = None
        if use_cache:
            try:
                key = _cache_key(p, tz, adj_close)
            except OSError:
                key = None
            hit = _cache_read(p, key) if key else None
            if hit is not None:
                return hit if report else hit[0]
        df, rep = _parse_frame(p, on_bad_rows=on_bad_rows, timezone=tz, adj_close=adj_close)
        if key is not None and rep.bad_rows == 0:
            _cache_write(p, key, df, rep)
        return (df, rep) if report else df

    # -- the storage layout --------------------------------------------------------------
    def path_for(self, symbol: str, bar_size: str) -> Path:
        sym = symbol.strip().upper()
        if not sym or sym in (".", "..") or any(ch in sym for ch in "/\\\0"):
            raise ValueError(f"not a storable symbol: {symbol!r}")
        return self.data_dir / sym / f"{canonical_bar_size(bar_size)}.csv"

    def exists(self, symbol: str, bar_size: str) -> bool:
        return self.path_for(symbol, bar_size).is_file()

    def load(
        self,
        symbol: str,
        bar_size: str,
        *,
        start: Any = None,
        end: Any = None,
        on_bad_rows: BadRows = "error",
    ) -> pd.DataFrame:
        """Stored bars of ``symbol`` (optionally ``start <= ts < end``); DataError if none stored."""
        p = self.path_for(symbol, bar_size)
        if not p.is_file():
            raise DataError(str(p), f"no stored {canonical_bar_size(bar_size)} bars for {symbol}")
        df = self.load_from_csv(p, on_bad_rows=on_bad_rows)
        return slice_bars(df, start, end)

    def save(self, symbol: str, bar_size: str, df: pd.DataFrame) -> Path:
        return self.save_to_csv(df, self.path_for(symbol, bar_size))

    def append(self, symbol: str, bar_size: str, df: pd.DataFrame) -> int:
        """Merge ``df`` into the stored file; returns how many new timestamps were added.

        A bar whose timestamp is already stored replaces it (the newer download wins: the last
        bar of a day is often revised).
        """
        p = self.path_for(symbol, bar_size)
        new = validate_bars(df, f"{symbol} {bar_size} bars to append")[list(BAR_COLUMNS)]
        with self._lock:
            if p.is_file():
                old = self.load_from_csv(p)
                added = int((~new.index.isin(old.index)).sum())
                if not len(new):
                    return 0
                merged = pd.concat([old, new])
                merged = merged[~merged.index.duplicated(keep="last")].sort_index(kind="stable")
            else:
                merged, added = new, len(new)
            self.save_to_csv(merged, p)
        return added

    def list(self) -> list[StoredSeries]:
        """Every stored file, sorted by symbol then bar size."""
        out: list[StoredSeries] = []
        if not self.data_dir.is_dir():
            return out
        for p in sorted(self.data_dir.glob("*/*.csv")):
            try:
                bar_size = canonical_bar_size(p.stem)
            except ValueError:
                continue
            rows, start, end = self._summary(p)
            out.append(StoredSeries(p.parent.name, bar_size, rows, start, end))
        out.sort(key=lambda s: (s.symbol, bar_timedelta(s.bar_size)))
        return out

    def _summary(self, p: Path) -> tuple[int, pd.Timestamp | None, pd.Timestamp | None]:
        """Rows and range without parsing the whole file: cache if fresh, else first/last lines."""
        key = _cache_key(p, self.timezone, False)
        hit = _cache_read(p, key) if self.cache else None
        if hit is not None:
            df = hit[0]
            return len(df), (df.index[0] if len(df) else None), (df.index[-1] if len(df) else None)
        rows, first, last = _count_and_ends(p)
        if rows == 0:
            return 0, None, None
        header = _read_header(p, str(p))
        date_col, _ = _map_columns(header, str(p))
        pos = [header.index(c) for c in (date_col if isinstance(date_col, list) else [date_col])]
        import csv

        vals = []
        for line in (first, last):
            cells = next(csv.reader([line]))
            vals.append(" ".join(cells[i] for i in pos if i < len(cells)))
        raw = pd.Series(vals, dtype=object)
        num = pd.to_numeric(raw, errors="coerce")
        idx = parse_timestamps(num if num.notna().all() else raw, self.timezone)
        start = idx[0] if not pd.isna(idx[0]) else None
        end = idx[1] if not pd.isna(idx[1]) else None
        return rows, start, end


def _count_and_ends(p: Path) -> tuple[int, str, str]:
    """Data rows (lines after the header), the first and the last data line."""
    newlines = 0
    tail = b""
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            newlines += chunk.count(b"\n")
            tail = chunk
        f.seek(0)
        f.readline()
        first = f.readline().decode("utf-8", "replace").strip()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 65536))
        tail = f.read()
    lines = newlines + (0 if tail.endswith(b"\n") or not tail else 1)
    rows = max(lines - 1, 0)
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace").strip()
    return rows, first, last


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
