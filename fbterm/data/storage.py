"""DataStorage: bars as CSV files on disk, one file per symbol and bar size, saved atomically.

Loading accepts what people have (:mod:`fbterm.data.csvparse`) and keeps a binary cache of
clean loads (:mod:`fbterm.data.cache`); every frame that goes in or out is in the one bar
shape (:mod:`fbterm.data.bars`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import numpy as np
import pandas as pd

from fbterm.data.bars import (
    BAR_COLUMNS,
    INDEX_NAME,
    DataError,
    bar_index,
    bar_timedelta,
    canonical_bar_size,
    slice_bars,
    validate_bars,
)
from fbterm.data.cache import cache_key, cache_read, cache_write
from fbterm.data.csvlayout import read_layout
from fbterm.data.csvparse import (
    BadRows,
    LoadReport,
    map_columns,
    parse_frame,
    parse_timestamps,
)


class StoredSeries(NamedTuple):
    """One file in the storage layout, as :meth:`DataStorage.list` reports it."""

    symbol: str
    bar_size: str
    rows: int
    start: pd.Timestamp | None
    end: pd.Timestamp | None


# ---------------------------------------------------------------------------- CSV writing


def _format_times(idx: pd.DatetimeIndex) -> list[str]:
    ns = idx.tz_convert("UTC").as_unit("ns").asi8
    unit: Literal["s", "ms", "us", "ns"] = "s"
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
    fields = [_format_times(bar_index(df)), *(_format_column(df[c]) for c in columns)]
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
            cache_write(p, cache_key(p, self.timezone, False), bars, rep)
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
                key = cache_key(p, tz, adj_close)
            except OSError:
                key = None
            hit = cache_read(p, key) if key else None
            if hit is not None:
                return hit if report else hit[0]
        df, rep = parse_frame(p, on_bad_rows=on_bad_rows, timezone=tz, adj_close=adj_close)
        if key is not None and rep.bad_rows == 0:
            cache_write(p, key, df, rep)
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
        key = cache_key(p, self.timezone, False)
        hit = cache_read(p, key) if self.cache else None
        if hit is not None:
            df = hit[0]
            return len(df), (df.index[0] if len(df) else None), (df.index[-1] if len(df) else None)
        layout = read_layout(p, str(p))
        rows, first, last = _count_and_ends(p, layout.has_header)
        if rows == 0:
            return 0, None, None
        header = layout.header
        date_col, _ = map_columns(header, str(p))
        pos = [header.index(c) for c in (date_col if isinstance(date_col, list) else [date_col])]
        import csv

        vals = []
        for line in (first, last):
            cells = next(csv.reader([line], delimiter=layout.delimiter))
            vals.append(" ".join(cells[i] for i in pos if i < len(cells)))
        raw = pd.Series(vals, dtype=object)
        num = pd.to_numeric(raw, errors="coerce")
        idx = parse_timestamps(num if num.notna().all() else raw, self.timezone)
        start = idx[0] if not pd.isna(idx[0]) else None
        end = idx[1] if not pd.isna(idx[1]) else None
        return rows, start, end


def _count_and_ends(p: Path, has_header: bool = True) -> tuple[int, str, str]:
    """Data rows (lines after the header, if any), the first and the last data line."""
    newlines = 0
    tail = b""
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            newlines += chunk.count(b"\n")
            tail = chunk
        f.seek(0)
        if has_header:
            f.readline()
        first = f.readline().decode("utf-8", "replace").strip()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - 65536))
        tail = f.read()
    lines = newlines + (0 if tail.endswith(b"\n") or not tail else 1)
    rows = max(lines - (1 if has_header else 0), 0)
    last = tail.rstrip(b"\r\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace").strip()
    return rows, first, last
