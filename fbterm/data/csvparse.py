"""Reading bars from CSV: the columns people name in many ways, timestamps in many formats,
and bad rows, which are refused, dropped or repaired and always reported.

Loading is tuned for the common case (ISO or epoch timestamps, clean numbers): one pandas C
parse, vectorised checks, no per-row Python.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from fbterm.data.bars import (
    BAR_COLUMNS,
    PRICE_COLUMNS,
    DataError,
    bars_from_arrays,
    describe_problem,
)
from fbterm.data.csvlayout import read_layout

BadRows = Literal["error", "drop", "repair"]
_MAX_EXAMPLES = 5


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
    # How the file's clock was read, said once: the zone of its naive times and what daylight
    # saving did to them ("2 local times in the DST gap moved forward ...").
    notes: list[str] = field(default_factory=list)
    clock: str = "UTC"  # the zone the file's times were read in: its own, or the one named
    layout: str = ""  # what was assumed of the file's layout (csvlayout), '' for plain CSV

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
            "sorted": self.sorted, "notes": self.notes, "clock": self.clock,
            "layout": self.layout,
        }  # fmt: skip


# ---------------------------------------------------------------------------- CSV parsing

_DATE_NAMES = ("ts", "date", "datetime", "time", "timestamp", "date_time", "dt", "datum")
_ALIASES = {
    "open": "open", "o": "open", "high": "high", "h": "high", "low": "low", "l": "low",
    "close": "close", "c": "close", "last": "close", "volume": "volume", "vol": "volume", "v": "volume",
    "adjclose": "adj_close", "adjustedclose": "adj_close",
    # German and French exports (with ';' and decimal commas, see csvlayout).
    "eröffnung": "open", "eroeffnung": "open", "erster": "open", "hoch": "high", "tief": "low",
    "schluss": "close", "schlusskurs": "close", "letzter": "close", "volumen": "volume",
    "ouverture": "open", "haut": "high", "plushaut": "high", "bas": "low", "plusbas": "low",
    "clôture": "close", "cloture": "close", "dernier": "close",
}  # fmt: skip
_NUMBER = re.compile(r"^[+-]?\d+(\.\d*)?([eE][+-]?\d+)?$")
_TZ_SUFFIX = re.compile(r"(Z|[+-]\d\d:?\d\d|UTC|GMT)\s*$", re.IGNORECASE)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", str(name).strip().lower())


def map_columns(header: Sequence[str], where: str) -> tuple[str | list[str], dict[str, str]]:
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


@dataclass
class ClockFixes:
    """What reading naive local times in a zone with daylight saving had to decide, per row.

    * ``shifted``: a local time that does not exist (the spring-forward gap, 02:30 in New York
      on the second Sunday of March) is moved forward to the end of the gap (03:00 EDT), the
      first time that exists: pandas' ``shift_forward``, and what data vendors publishing in
      local time do;
    * ``repeated`` / ``second``: a local time that happens twice (the autumn fall-back hour) is
      read as its first occurrence (daylight time); when the same wall time appears again in
      the file, that later row is the second occurrence (standard time).

    Neither is a bad row: the load goes on and the report says what was done, once.
    """

    timezone: str
    shifted: np.ndarray
    repeated: np.ndarray
    second: np.ndarray

    def notes(self, raw: pd.Series, lines: np.ndarray) -> list[str]:
        out = [f"times without a zone read as {self.timezone} wall-clock time"]
        for mask, one, many, what in (
            (self.shifted, "does not exist", "do not exist", "(daylight saving gap): moved "
             "forward to the end of the gap"),
            (self.repeated, "happens twice", "happen twice", "(daylight saving ends): read as "
             "the first occurrence (daylight time), a repeat of the same time as the second "
             "(standard)"),
        ):  # fmt: skip
            hits = np.flatnonzero(mask)
            if len(hits):
                ex = ", ".join(f"line {lines[i]} {raw.iloc[i]!s}" for i in hits[:3])
                n = len(hits)
                verb = one if n == 1 else many
                out.append(
                    f"{n} local time{'s' if n != 1 else ''} in {self.timezone} {verb} {what} "
                    f"(e.g. {ex})"
                )
        return out


def localize(idx: pd.DatetimeIndex, timezone: str) -> tuple[pd.DatetimeIndex, ClockFixes]:
    """Naive wall-clock times in ``timezone`` as UTC, daylight saving resolved (see
    :class:`ClockFixes`; the common case, nothing to decide, costs one call)."""
    try:
        out = idx.tz_localize(timezone, ambiguous="raise", nonexistent="raise")
        none = np.zeros(0, dtype=bool)
        return out.tz_convert("UTC"), ClockFixes(timezone, none, none, none)
    except ValueError:
        pass  # a DST gap or a repeated hour: decided row by row below
    n = len(idx)
    as_dst = idx.tz_localize(timezone, ambiguous=np.ones(n, dtype=bool), nonexistent="NaT")
    as_std = idx.tz_localize(timezone, ambiguous=np.zeros(n, dtype=bool), nonexistent="NaT")
    valid = np.asarray(idx.notna())
    shifted = valid & np.asarray(as_dst.isna())
    repeated = valid & ~shifted & (np.asarray(as_dst.asi8) != np.asarray(as_std.asi8))
    # The first time a repeated wall time appears it is daylight time; again, standard time.
    second = repeated & pd.Series(np.where(repeated, idx.asi8, -1)).duplicated().to_numpy()
    out = idx.tz_localize(timezone, ambiguous=~second, nonexistent="shift_forward")
    return out.tz_convert("UTC"), ClockFixes(timezone, shifted, repeated, second)


def parse_timestamps(
    raw: pd.Series | np.ndarray, timezone: str, fixes: list[ClockFixes] | None = None
) -> pd.DatetimeIndex:
    """Timestamps as UTC nanoseconds; unparsable values become NaT.

    Numbers are epoch seconds (or ms/us/ns by magnitude; eight-digit integers are YYYYMMDD);
    text is ISO 8601 (with or without time, offset or ``Z``), else any format pandas infers.
    A file whose times carry an offset or ``Z`` keeps its own clock; times without a zone are
    wall-clock times in ``timezone``, daylight saving resolved by :func:`localize` (what it
    decided is appended to ``fixes`` when given).
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
        alt = _to_datetime(stripped, aware, _dotted_day_first(first))
        if np.count_nonzero(alt.notna()) > np.count_nonzero(idx.notna()):
            idx = alt
    if not aware:
        idx, fix = localize(idx, timezone)
        if fixes is not None:
            fixes.append(fix)
    return idx.as_unit("ns")


_DOTTED = re.compile(r"^\s*\d{1,2}\.\d{1,2}\.(\d{4}|\d{2})(?:\s+\d{1,2}:\d{2}(:\d{2})?)?\s*$")


def _dotted_day_first(first: str) -> str | None:
    """The format of dates written with dots, ``01.03.2024 09:30``: day first, as everywhere
    that writes them so (pandas would read month first); None for anything else."""
    m = _DOTTED.match(first)
    if not m:
        return None
    year = "%Y" if len(m[1]) == 4 else "%y"
    clock = "" if ":" not in first else " %H:%M:%S" if m[2] else " %H:%M"
    return f"%d.%m.{year}{clock}"


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
        idx = pd.DatetimeIndex(idx.where(np.isfinite(x)))  # NaT where x is not a number
        return idx.tz_localize("UTC").as_unit("ns")
    scale = 1e9 if big < 1e11 else 1e6 if big < 1e14 else 1e3 if big < 1e17 else 1.0
    with np.errstate(invalid="ignore"):
        ns = np.where(np.isfinite(x), np.round(x * scale), np.nan)
    ok = np.isfinite(ns) & (np.abs(ns) < 9.2e18)
    vals = np.where(ok, ns, 0).astype(np.int64)
    vals[~ok] = np.iinfo(np.int64).min  # NaT
    return pd.DatetimeIndex(vals.view("datetime64[ns]")).tz_localize("UTC")


def parse_frame(
    path: Path,
    *,
    on_bad_rows: BadRows,
    timezone: str,
    adj_close: bool,
) -> tuple[pd.DataFrame, LoadReport]:
    where = str(path)
    report = LoadReport(path=where)
    layout = read_layout(path, where)
    header = layout.header
    report.layout = layout.note()
    date_col, mapping = map_columns(header, where)
    if adj_close and "adj_close" not in mapping.values():
        raise DataError(
            where, "no Adj Close column to adjust the prices with (--adjust, adj_close)", line=1
        )
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
                sep=layout.delimiter, decimal=layout.decimal,
                thousands="." if layout.decimal == "," else None,
                header=0 if layout.has_header else None,
                names=None if layout.has_header else header,
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
    lines = np.arange(layout.first_data_line, n + layout.first_data_line)

    if isinstance(date_col, list):
        d, t = (raw[c].astype("string").fillna("") for c in date_col)
        # pandas-stubs only let a text Series be replaced with text; NaN is what marks blanks.
        traw = (d + " " + t).str.strip().replace("", np.nan).astype(object)  # type: ignore[call-overload]
    else:
        traw = raw[date_col]
        first = _first_text(traw)
        if first is not None and _NUMBER.match(first.strip()):
            # Epoch numbers came in as text because of the object dtype.
            num = pd.to_numeric(traw, errors="coerce")
            if num.notna().sum() == traw.notna().sum() and traw.notna().any():
                traw = num
    fixes: list[ClockFixes] = []
    idx = parse_timestamps(traw, timezone, fixes)
    for fix in fixes:
        report.notes.extend(fix.notes(pd.Series(traw), lines))
        report.clock = fix.timezone
    shifted = fixes[0].shifted if fixes and len(fixes[0].shifted) else None

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
        note((h < lo) & valid_px, "high < low", lambda i: describe_problem("high < low", i, cols))
        note(
            (h < np.maximum(o, c_)) & (h >= lo) & valid_px,
            "high below open/close",
            lambda i: describe_problem("high below open/close", i, cols),
        )
        note(
            (lo > np.minimum(o, c_)) & (h >= lo) & (h >= np.maximum(o, c_)) & valid_px,
            "low above open/close",
            lambda i: describe_problem("low above open/close", i, cols),
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
    if shifted is not None and shifted.any():
        # A time moved out of the DST gap onto a time the file also has: the file has 24
        # hours that day, so its clock is probably not this zone. The moved row goes.
        clash = shifted & good & pd.Series(np.where(good, ts, -1)).duplicated(keep=False).to_numpy()
        if clash.any():
            i = int(np.flatnonzero(clash)[0])
            report.notes.append(
                f"{int(clash.sum())} row(s) in the DST gap landed on a time the file also has "
                f"and were dropped (e.g. line {lines[i]}): does the file really use "
                f"{timezone} time? If not, name its zone (--timezone)"
            )
            report.dropped["DST gap clash"] = int(clash.sum())
            good = good & ~clash
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
    return bars_from_arrays(ts, arrays), report


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


def read_header(path: Path, where: str) -> list[str]:
    """The column names of the bar file at ``path`` (positional ones if it has no header)."""
    return read_layout(path, where).header
