"""Where bars and ticks come from: source protocols, DataRetrieval, and the CSV and simulated sources.

A historical source answers ``fetch_bars(symbol, start, end, bar_size)`` with bars in the one
shape for ``start <= ts < end`` (``start``/``end`` are UTC ``pd.Timestamp``s). A realtime
source's ``stream(symbols)`` is an async generator of tick batches, paced by the source. The
Interactive Brokers source (``fbterm.data.ib_source``) implements both.

:class:`DataRetrieval` caches historical bars in :class:`DataStorage` and remembers which
ranges it has fetched (``<bar size>.coverage.json`` next to the CSV), so a second request for
a covered range never reaches the source, even where the range holds no bars (weekends).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import tempfile
import threading
import zlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from fbterm.data.bars import (
    BAR_COLUMNS,
    DataError,
    bar_index,
    bar_timedelta,
    canonical_bar_size,
    empty_bars,
    slice_bars,
    to_utc,
    validate_bars,
)
from fbterm.data.csvparse import BadRows
from fbterm.data.simulated import SimulatedMarket, synth_bars
from fbterm.data.storage import DataStorage
from fbterm.model import Tick


@runtime_checkable
class HistoricalSource(Protocol):
    name: str

    def fetch_bars(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, bar_size: str
    ) -> pd.DataFrame:
        """Bars with ``start <= ts < end`` in the one shape (may also return an awaitable of them)."""
        ...


@runtime_checkable
class RealtimeSource(Protocol):
    name: str

    def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]:
        """An async generator of tick batches for ``symbols``, paced by the source."""
        ...


# ---------------------------------------------------------------------------- coverage

Interval = tuple[int, int]  # [start, end) in UTC nanoseconds


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for a, b in sorted(i for i in intervals if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def subtract_intervals(want: Interval, have: Sequence[Interval]) -> list[Interval]:
    """The parts of ``want`` not covered by the (merged) intervals ``have``."""
    a, b = want
    out: list[Interval] = []
    for x, y in have:
        if y <= a or x >= b:
            continue
        if x > a:
            out.append((a, x))
        a = max(a, y)
        if a >= b:
            break
    if a < b:
        out.append((a, b))
    return out


class DataRetrieval:
    """Historical bars (cached) and realtime ticks through pluggable sources."""

    def __init__(
        self,
        storage: DataStorage,
        historical: HistoricalSource | None = None,
        realtime: RealtimeSource | None = None,
    ):
        self.storage = storage
        self.historical = historical
        self.realtime = realtime
        self._lock = threading.Lock()

    # -- coverage bookkeeping ------------------------------------------------------------
    def _coverage_path(self, symbol: str, bar_size: str) -> Path:
        p = self.storage.path_for(symbol, bar_size)
        return p.with_name(f"{p.stem}.coverage.json")

    def coverage(self, symbol: str, bar_size: str) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
        """The ranges already fetched from the source, as UTC timestamps."""
        return [
            (pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC"))
            for a, b in self._read_cov(symbol, bar_size)
        ]

    def _read_cov(self, symbol: str, bar_size: str) -> list[Interval]:
        p = self._coverage_path(symbol, bar_size)
        try:
            raw = json.loads(p.read_text())
            return merge_intervals((int(a), int(b)) for a, b in raw["ranges"])
        except FileNotFoundError:
            return []
        except (OSError, ValueError, KeyError, TypeError):
            return []  # a damaged coverage file only costs a refetch

    def _write_cov(self, symbol: str, bar_size: str, ranges: list[Interval]) -> None:
        p = self._coverage_path(symbol, bar_size)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({"ranges": [[a, b] for a, b in ranges]}, f)
        os.replace(tmp, p)

    def _plan(
        self, symbol: str, start: Any, end: Any, bar_size: str
    ) -> tuple[pd.Timestamp, pd.Timestamp, list[Interval]]:
        bar_size = canonical_bar_size(bar_size)
        t0 = to_utc(start)
        t1 = to_utc(end) if end is not None else pd.Timestamp.now(tz="UTC")
        if t1 <= t0:
            raise ValueError(f"end ({t1}) must be after start ({t0})")
        missing = subtract_intervals((t0.value, t1.value), self._read_cov(symbol, bar_size))
        return t0, t1, missing

    def _store(self, symbol: str, bar_size: str, part: Interval, df: Any) -> None:
        src = getattr(self.historical, "name", "source")
        where = f"{src} {symbol} {canonical_bar_size(bar_size)} bars"
        bars = (
            empty_bars() if isinstance(df, pd.DataFrame) and df.empty else validate_bars(df, where)
        )
        a, b = part
        bars = slice_bars(bars, pd.Timestamp(a, tz="UTC"), pd.Timestamp(b, tz="UTC"))
        # The bar in progress is not final: coverage stops at its start so it is fetched again.
        step = bar_timedelta(bar_size).value
        now = pd.Timestamp.now(tz="UTC").value
        covered_to = min(b, now - now % step)
        with self._lock:
            if len(bars):
                self.storage.append(symbol, bar_size, bars)
            if covered_to > a:
                cov = self._read_cov(symbol, bar_size)
                self._write_cov(symbol, bar_size, merge_intervals([*cov, (a, covered_to)]))

    def _result(
        self, symbol: str, bar_size: str, t0: pd.Timestamp, t1: pd.Timestamp
    ) -> pd.DataFrame:
        if not self.storage.exists(symbol, bar_size):
            return empty_bars()
        return self.storage.load(symbol, bar_size, start=t0, end=t1)

    def _need_source(self, symbol: str, bar_size: str) -> HistoricalSource:
        if self.historical is None:
            raise DataError(
                str(self.storage.path_for(symbol, bar_size)),
                f"{symbol} {bar_size} bars are not cached for this range and no historical source is configured",
            )
        return self.historical

    # -- the API -------------------------------------------------------------------------
    def fetch_historical_data(
        self, symbol: str, start: Any, end: Any = None, bar_size: str = "1d"
    ) -> pd.DataFrame:
        """Bars with ``start <= ts < end`` (``end`` defaults to now), fetching only what is not cached.

        ``start``/``end`` may be anything :func:`pandas.Timestamp` accepts or epoch seconds;
        naive means UTC. For a source whose ``fetch_bars`` is async use
        :meth:`afetch_historical_data`.
        """
        t0, t1, missing = self._plan(symbol, start, end, bar_size)
        for a, b in missing:
            src = self._need_source(symbol, bar_size)
            # Any, not the protocol's DataFrame: a source may be async against its protocol,
            # which is checked here at run time.
            df: Any = src.fetch_bars(
                symbol,
                pd.Timestamp(a, tz="UTC"),
                pd.Timestamp(b, tz="UTC"),
                canonical_bar_size(bar_size),
            )
            if inspect.isawaitable(df):
                if inspect.iscoroutine(df):
                    df.close()
                raise TypeError(f"{src.name}.fetch_bars is async: use afetch_historical_data")
            self._store(symbol, bar_size, (a, b), df)
        return self._result(symbol, bar_size, t0, t1)

    async def afetch_historical_data(
        self, symbol: str, start: Any, end: Any = None, bar_size: str = "1d"
    ) -> pd.DataFrame:
        """:meth:`fetch_historical_data` for sources whose ``fetch_bars`` is a coroutine (sync ones work too)."""
        t0, t1, missing = self._plan(symbol, start, end, bar_size)
        for a, b in missing:
            src = self._need_source(symbol, bar_size)
            df = src.fetch_bars(
                symbol,
                pd.Timestamp(a, tz="UTC"),
                pd.Timestamp(b, tz="UTC"),
                canonical_bar_size(bar_size),
            )
            if inspect.isawaitable(df):
                df = await df
            self._store(symbol, bar_size, (a, b), df)
        return self._result(symbol, bar_size, t0, t1)

    async def fetch_realtime_data(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]:
        """Tick batches from the realtime source, as it paces them."""
        if self.realtime is None:
            raise DataError("realtime data", "no realtime source is configured")
        async for batch in self.realtime.stream(list(symbols)):
            yield batch


# ---------------------------------------------------------------------------- CSV source

# Where inside a bar its four replay ticks fall, as fractions of the bar.
_TICK_OFFSETS = np.array([0.0, 0.25, 0.5, 0.75])


def bars_to_ticks(
    df: pd.DataFrame, step: pd.Timedelta
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Four ticks per bar (open, the nearer extreme, the other extreme, close) as
    (ts ns, price, volume) arrays; a rising bar visits its low first, a falling bar its high."""
    o, h, lo, c, v = (df[k].to_numpy(dtype=np.float64) for k in BAR_COLUMNS)
    up = c >= o
    prices = np.column_stack([o, np.where(up, lo, h), np.where(up, h, lo), c]).ravel()
    ts = (
        bar_index(df).as_unit("ns").asi8[:, None]
        + (_TICK_OFFSETS * step.value).astype(np.int64)[None, :]
    ).ravel()
    vols = np.repeat(v / 4.0, 4)
    return ts, prices, vols


class CSVSource:
    """Replays stored bars as ticks; also a :class:`HistoricalSource` over the same files.

    ``source`` is a CSV file (one symbol: ``symbol`` or the folder name in the storage layout,
    else the file name), a storage folder, or a :class:`DataStorage`. ``speed`` 0 replays as
    fast as possible, 1 in real time, N at N x. Each bar becomes four ticks; a batch holds the
    ticks of all symbols that share a timestamp. ``spread_bps`` puts a spread around the price.
    """

    name = "csv"

    def __init__(
        self,
        source: str | os.PathLike[str] | DataStorage,
        speed: float = 0.0,
        *,
        bar_size: str = "1d",
        symbol: str | None = None,
        spread_bps: float = 0.0,
        on_bad_rows: BadRows = "error",
        timezone: str = "America/New_York",
    ):
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.speed = float(speed)
        self.bar_size = canonical_bar_size(bar_size)
        self.spread_bps = spread_bps
        self.on_bad_rows = on_bad_rows
        self.file: Path | None = None
        if isinstance(source, DataStorage):
            self.storage = source
        else:
            p = Path(source).expanduser()
            if p.is_dir():
                self.storage = DataStorage(p, timezone)
            else:
                self.storage = DataStorage(p.parent, timezone)
                self.file = p
                if symbol is None:
                    try:
                        canonical_bar_size(p.stem)
                        symbol = p.parent.name
                    except ValueError:
                        symbol = p.stem
                symbol = symbol.upper()
        self.symbol = symbol

    def symbols(self) -> list[str]:
        if self.file is not None:
            return [self.symbol or ""]
        return sorted({s.symbol for s in self.storage.list()})

    def _load(self, symbol: str, bar_size: str | None = None) -> pd.DataFrame:
        if self.file is not None:
            if symbol.upper() != self.symbol:
                raise DataError(str(self.file), f"holds {self.symbol} bars, not {symbol}")
            return self.storage.load_from_csv(self.file, on_bad_rows=self.on_bad_rows)
        return self.storage.load(symbol, bar_size or self.bar_size, on_bad_rows=self.on_bad_rows)

    def fetch_bars(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, bar_size: str
    ) -> pd.DataFrame:
        return slice_bars(self._load(symbol, bar_size), start, end)

    async def stream(self, symbols: Sequence[str] | None = None) -> AsyncIterator[list[Tick]]:
        syms = list(symbols) if symbols else self.symbols()
        parts = []
        for k, sym in enumerate(syms):
            df = self._load(sym)
            if not len(df):
                continue
            step = bar_timedelta(self.bar_size)
            if len(df) > 1:
                d = np.diff(bar_index(df).as_unit("ns").asi8)
                step = pd.Timedelta(int(np.median(d)), unit="ns")
            ts, px, vol = bars_to_ticks(df, step)
            parts.append((ts, np.full(len(ts), k, dtype=np.int64), px, vol))
        if not parts:
            return
        ts = np.concatenate([p[0] for p in parts])
        who = np.concatenate([p[1] for p in parts])
        px = np.concatenate([p[2] for p in parts])
        vol = np.concatenate([p[3] for p in parts])
        if len(parts) > 1:
            order = np.lexsort((who, ts))
            ts, who, px, vol = ts[order], who[order], px[order], vol[order]
        half = px * (self.spread_bps / 2e4)
        bid, ask = px - half, px + half
        starts = np.flatnonzero(np.diff(ts, prepend=ts[0] - 1))
        ends = np.append(starts[1:], len(ts))
        loop = asyncio.get_running_loop()
        wall0, ts0 = loop.time(), ts[0]
        chunk = 65_536  # ticks turned into Python objects at a time
        for c0 in range(0, len(starts), chunk):
            s_idx = starts[c0 : c0 + chunk]
            e_idx = ends[c0 : c0 + chunk]
            lo, hi = int(s_idx[0]), int(e_idx[-1])
            t_l = (ts[lo:hi] / 1e9).tolist()
            n_l = [syms[i] for i in who[lo:hi].tolist()]
            b_l, a_l, p_l, v_l = (x[lo:hi].tolist() for x in (bid, ask, px, vol))
            ticks = list(map(Tick, n_l, t_l, b_l, a_l, p_l, v_l))
            for j, (s, e) in enumerate(zip(s_idx.tolist(), e_idx.tolist(), strict=True)):
                if self.speed > 0:
                    due = wall0 + (ts[s] - ts0) / 1e9 / self.speed
                    delay = due - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif j % 256 == 0:
                    await asyncio.sleep(0)  # let the rest of the loop breathe
                yield ticks[s - lo : e - lo]


# ---------------------------------------------------------------------------- simulated source


class SimulatedSource:
    """Paces :meth:`SimulatedMarket.next_ticks` in real time; also synthesises history.

    ``ticks_per_second`` defaults to the market's configured rate. If the consumer falls more
    than a second behind, pacing restarts from now instead of bursting to catch up.
    """

    name = "simulated"

    def __init__(self, market: SimulatedMarket, ticks_per_second: float | None = None):
        self.market = market
        self.ticks_per_second = float(ticks_per_second or market.cfg.ticks_per_second)
        if self.ticks_per_second <= 0:
            raise ValueError("ticks_per_second must be > 0")

    async def stream(self, symbols: Sequence[str] | None = None) -> AsyncIterator[list[Tick]]:
        wanted = None
        if symbols:
            unknown = [s for s in symbols if s not in self.market.symbols]
            if unknown:
                raise DataError("simulated market", f"unknown symbol(s) {', '.join(unknown)}")
            if set(symbols) != set(self.market.symbols):
                wanted = set(symbols)
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.ticks_per_second
        due = loop.time()
        while True:
            ticks = self.market.next_ticks()
            yield ticks if wanted is None else [t for t in ticks if t.symbol in wanted]
            due += interval
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                if delay < -1.0:
                    due = loop.time()
                await asyncio.sleep(0)

    def fetch_bars(
        self, symbol: str, start: pd.Timestamp, end: pd.Timestamp, bar_size: str
    ) -> pd.DataFrame:
        """Synthetic history for ``symbol`` ending at the market's start price (for warm-up).

        Deterministic for the market's seed, the symbol, the bar size and the range.
        """
        if symbol not in self.market.symbols:
            raise DataError("simulated market", f"unknown symbol {symbol}")
        c = canonical_bar_size(bar_size)
        t0, t1 = to_utc(start), to_utc(end)
        step = bar_timedelta(c)
        if c == "1d":
            idx = pd.bdate_range(t0.ceil("D"), t1, inclusive="left", tz="UTC")
        else:
            first = t0.ceil(step) if c[-1] != "w" else t0
            idx = pd.date_range(first, t1, freq=step, inclusive="left")
        if not len(idx):
            return empty_bars()
        if len(idx) > 5_000_000:
            raise DataError(
                "simulated market", f"{len(idx):,} bars requested; ask for a shorter range"
            )
        seed = zlib.crc32(f"{self.market.cfg.seed}|{symbol}|{c}|{idx[0].value}".encode())
        vol = self.market.cfg.volatility
        bars = synth_bars(len(idx), bar_size=c, seed=seed, start=idx[0], volatility=vol)
        bars.index = idx.as_unit("ns")
        bars.index.name = "ts"
        target = float(self.market.cfg.prices.get(symbol, 100.0))
        scale = target / float(bars["close"].iloc[-1])
        out = bars.copy()
        for col in ("open", "high", "low", "close"):
            out[col] = np.maximum((bars[col] * scale).round(4), 1e-4)
        out.attrs.clear()
        return out
