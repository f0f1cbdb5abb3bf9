"""Interactive Brokers as a market-data source: paged historical bars and streaming quotes.

Historical requests are split into pieces IB accepts for the bar size and sent through a
:class:`PacingGate` that keeps to IB's pacing rules (no identical request within 15 s, at most
6 requests for one contract within 2 s, at most 60 requests per 10 minutes for bars of 30 s or
less), so a long download slows down instead of earning a pacing violation. The gate's clock
and sleep are injectable: tests check the waits without waiting.

Like the broker, this runs on the engine thread's loop and uses only ib_async's ``*Async``
calls and subscriptions. It can share the broker's connection (``IBSource(broker)``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from ib_async import IB, Ticker
from ib_async import Contract as IBContract

from fbterm.data.bars import bar_timedelta, empty_bars, validate_bars
from fbterm.data.ib_chains import IBOptionChains
from fbterm.execution.brokers.ib import BrokerIntegration, describe_ib_error, to_ib_contract
from fbterm.model import Tick, instrument_from_key

# IB's bar size settings (its spelling, including "1 secs"), by seconds.
_IB_BAR_SIZES = {
    1: "1 secs",
    5: "5 secs",
    10: "10 secs",
    15: "15 secs",
    30: "30 secs",
    60: "1 min",
    120: "2 mins",
    180: "3 mins",
    300: "5 mins",
    600: "10 mins",
    900: "15 mins",
    1200: "20 mins",
    1800: "30 mins",
    3600: "1 hour",
    7200: "2 hours",
    10800: "3 hours",
    14400: "4 hours",
    28800: "8 hours",
    86400: "1 day",
    604800: "1 week",
}
# Longest duration IB serves in one request, by bar size (seconds -> seconds), conservative.
_MAX_SPAN = [
    (1, 1800),
    (5, 3600),
    (10, 14_400),
    (30, 28_800),
    (60, 86_400),
    (300, 7 * 86_400),
    (900, 14 * 86_400),
    (3600, 30 * 86_400),
    (86_400, 365 * 86_400),
]


class IBDataError(RuntimeError):
    """IB could not deliver the data asked for; the message says why in one line."""


def normalize_bar_size(bar_size: str) -> tuple[str, int]:
    """(IB bar size setting, seconds) from ``"1 min"``, ``"5 secs"``, ``"1m"``, ``"1d"``..."""
    seconds = int(bar_timedelta(bar_size).total_seconds())
    setting = _IB_BAR_SIZES.get(seconds)
    if setting is None:
        raise ValueError(
            f"IB has no {bar_size!r} bars: use one of {', '.join(_IB_BAR_SIZES.values())}"
        )
    return setting, seconds


def max_span(bar_seconds: int) -> int:
    for limit, span in _MAX_SPAN:
        if bar_seconds <= limit:
            return span
    return _MAX_SPAN[-1][1]


def duration_string(seconds: int) -> str:
    """IB durationStr covering ``seconds``: seconds up to a day, then whole days."""
    if seconds <= 86_400:
        return f"{max(int(seconds), 30)} S"
    return f"{math.ceil(seconds / 86_400)} D"


@dataclass
class PacingGate:
    """IB's historical-data pacing rules as a gate every request passes through."""

    identical_window: float = 15.0
    max_requests: int = 60
    window: float = 600.0
    contract_burst: int = 6
    contract_window: float = 2.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep
    _recent: deque[float] = field(default_factory=deque)
    _by_contract: dict[str, deque[float]] = field(default_factory=dict)
    _identical: dict[tuple[Any, ...], float] = field(default_factory=dict)
    waited: float = 0.0  # total seconds this gate has made callers wait

    def delay_for(self, key: tuple[Any, ...], contract: str, small_bars: bool) -> float:
        now = self.clock()
        wait = 0.0
        last = self._identical.get(key)
        if last is not None:
            wait = max(wait, last + self.identical_window - now)
        q = self._by_contract.get(contract)
        if q and len(q) >= self.contract_burst:
            wait = max(wait, q[-self.contract_burst] + self.contract_window - now)
        if small_bars and len(self._recent) >= self.max_requests:
            wait = max(wait, self._recent[-self.max_requests] + self.window - now)
        return max(wait, 0.0)

    async def acquire(self, key: tuple[Any, ...], contract: str, small_bars: bool) -> None:
        while (wait := self.delay_for(key, contract, small_bars)) > 0:
            self.waited += wait
            await self.sleep(wait)
        now = self.clock()
        self._identical[key] = now
        self._by_contract.setdefault(contract, deque(maxlen=self.contract_burst)).append(now)
        if small_bars:
            self._recent.append(now)
            while len(self._recent) > self.max_requests:
                self._recent.popleft()


NO_SUBSCRIPTION = frozenset({354, 10167})


class IBSource:
    """Bars and quotes from IB over ``connection``: an ``ib_async.IB``, or the IB broker, whose
    connection it then shares (read at each use: the broker opens it only when it starts)."""

    name = "ib"

    def __init__(
        self,
        connection: IB | BrokerIntegration,
        *,
        pacing: PacingGate | None = None,
        what_to_show: str = "TRADES",
        use_rth: bool = False,
        request_timeout: float = 60.0,
        max_retries: int = 3,
        retry_delay: float = 15.0,
        market_data_type: int = 1,
        on_wait: Callable[[str, str, float, int], None] | None = None,
        delayed_fallback: bool = False,
    ) -> None:
        self._conn = connection
        self.pacing = pacing or PacingGate()
        self.what_to_show = what_to_show
        self.use_rth = use_rth
        self.request_timeout = request_timeout
        self.max_retries = max_retries
        self.retry_delay = retry_delay
        self.market_data_type = market_data_type
        # Told of every pacing wait: (symbol, IB's reason, seconds, retry number).
        self.on_wait = on_wait
        self.delayed_fallback = delayed_fallback
        # True once quotes are delayed (asked for, or fallen back to): the header says so.
        self.delayed = market_data_type in (3, 4)
        self.requests = 0
        self._renew: Callable[[], None] | None = None
        # Option chains for the option strategies, over the same connection.
        self.option_chains = IBOptionChains(connection, timeout=min(request_timeout, 10.0))
        self._errors: dict[int, tuple[int, str]] = {}
        self._listening: IB | None = None

    @property
    def ib(self) -> IB:
        return self._conn if isinstance(self._conn, IB) else self._conn.ib

    def _listen(self) -> IB:
        ib = self.ib
        if self._listening is not ib:
            ib.errorEvent += self._on_error
            self._listening = ib
        return ib

    def _on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        if req_id > 0:
            self._errors[req_id] = (code, text)
        elif code == 1101 and self._renew is not None:
            # IB's link is back but every market-data subscription is gone: ask again.
            self._renew()

    # -- historical ---------------------------------------------------------------------------
    async def fetch_bars(
        self, symbol: str, start: dt.datetime, end: dt.datetime, bar_size: str = "1 min"
    ) -> pd.DataFrame:
        """Bars with ``start <= ts < end`` in fbterm's one bar shape, paged and paced."""
        start, end = _utc(start), _utc(end)
        if end <= start:
            raise ValueError(f"end {end} is not after start {start}")
        setting, bar_seconds = normalize_bar_size(bar_size)
        span = max_span(bar_seconds)
        contract = to_ib_contract(instrument_from_key(symbol))
        frames: list[pd.DataFrame] = []
        cursor = end
        while cursor > start:
            seconds = math.ceil((cursor - start).total_seconds())
            seconds = min(seconds, span)
            duration = duration_string(seconds)
            frames.append(await self._request(contract, cursor, duration, setting, bar_seconds))
            step = (
                86_400 * int(duration.split()[0])
                if duration.endswith("D")
                else int(duration.split()[0])
            )
            cursor = cursor - dt.timedelta(seconds=step)
        df = pd.concat(frames) if frames else empty_bars()
        df = df[~df.index.duplicated(keep="last")].sort_index()
        df = df[(df.index >= start) & (df.index < end)]
        return validate_bars(df, f"IB {symbol} {setting} bars")

    async def _request(
        self, contract: IBContract, end: dt.datetime, duration: str, setting: str, bar_seconds: int
    ) -> pd.DataFrame:
        ib = self._listen()
        # IB has no TRADES for currency pairs: their history is quotes.
        what = "MIDPOINT" if contract.secType == "CASH" else self.what_to_show
        key = (contract.symbol, end.isoformat(), duration, setting, what, self.use_rth)
        for attempt in range(self.max_retries + 1):
            await self.pacing.acquire(key, contract.symbol, small_bars=bar_seconds <= 30)
            self.requests += 1
            bars = await ib.reqHistoricalDataAsync(
                contract,
                end,
                duration,
                setting,
                what,
                self.use_rth,
                formatDate=2,
                timeout=self.request_timeout,
            )
            err = self._errors.pop(bars.reqId, None)
            if err is None:
                if not bars:
                    raise IBDataError(
                        f"{contract.symbol}: historical request timed out after "
                        f"{self.request_timeout:g}s ({duration} of {setting} to {end:%Y-%m-%d %H:%M})"
                    )
                return _to_frame(bars)
            code, text = err
            if code == 162 and "no data" in text.lower():
                return empty_bars()
            if code == 366 or (code == 162 and "pacing" in text.lower()):
                # Pacing: IB wants us to slow down. Wait it out, doubling the wait each time.
                if attempt < self.max_retries:
                    wait = self.retry_delay * 2**attempt
                    if self.on_wait is not None:
                        self.on_wait(
                            contract.symbol, describe_ib_error(code, text)[1], wait, attempt + 1
                        )
                    await self.pacing.sleep(wait)
                    continue
                raise IBDataError(
                    f"{contract.symbol}: {describe_ib_error(code, text)[1]}; "
                    f"gave up after {self.max_retries} retries"
                )
            raise IBDataError(f"{contract.symbol}: {describe_ib_error(code, text)[1]}")
        raise IBDataError(f"{contract.symbol}: historical request failed")  # pragma: no cover

    async def _qualified(self, ib: IB, symbols: Sequence[str]) -> list[IBContract]:
        """The symbols' contracts, qualified; over the broker's connection, from the broker's
        cache of qualified contracts (kept in the journal), so they are asked for once."""
        conn = self._conn
        if isinstance(conn, BrokerIntegration):
            instruments = [instrument_from_key(s) for s in symbols]
            problems = await conn.qualify(instruments)
            if problems:
                raise IBDataError(f"IB does not know {'; '.join(problems)}")
            return [to_ib_contract(i, conn.contracts.get(i)) for i in instruments]
        contracts = [to_ib_contract(instrument_from_key(s)) for s in symbols]
        qualified = await asyncio.wait_for(
            ib.qualifyContractsAsync(*contracts), self.request_timeout
        )
        missing = [s for s, q in zip(symbols, qualified, strict=True) if q is None]
        if missing:
            raise IBDataError(f"IB does not know {', '.join(missing)} (no security definition)")
        return contracts

    # -- streaming ----------------------------------------------------------------------------
    async def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]:
        """Quotes as they arrive, one list per network batch; resubscribes after a reconnect."""
        ib = self._listen()
        contracts = await self._qualified(ib, symbols)
        queue: asyncio.Queue[list[Tick]] = asyncio.Queue()
        # Ticks are keyed by the instrument key (a future's contract, a pair), not IB's symbol.
        wanted = {c.conId: s for c, s in zip(contracts, symbols, strict=True)}

        def on_tickers(tickers: set[Ticker]) -> None:
            batch = [
                t
                for t in (_tick(wanted.get(tk.contract.conId), tk) for tk in tickers if tk.contract)
                if t
            ]
            if batch:
                queue.put_nowait(batch)

        def subscribe() -> None:
            if self.market_data_type != 1:
                ib.reqMarketDataType(self.market_data_type)
            for c in contracts:
                ib.reqMktData(c)

        def renew() -> None:
            for c in contracts:
                ib.cancelMktData(c)
            subscribe()

        def on_error(req_id: int, code: int, text: str, contract: object) -> None:
            # 354: not subscribed; 10167: not subscribed, IB shows delayed data instead.
            if code not in NO_SUBSCRIPTION or self.market_data_type in (3, 4):
                return
            if not self.delayed_fallback:
                return
            self.market_data_type = 3
            self.delayed = True
            ib.reqMarketDataType(3)
            for c in contracts:
                ib.cancelMktData(c)
                ib.reqMktData(c)

        ib.pendingTickersEvent += on_tickers
        ib.errorEvent += on_error
        # Subscriptions die with the socket; the IB object reconnects in place and says so.
        # After IB's 1101 (link back, data lost) the socket lived: renew them ourselves.
        ib.connectedEvent += subscribe
        self._renew = renew
        subscribe()
        try:
            while True:
                yield await queue.get()
        finally:
            self._renew = None
            ib.pendingTickersEvent -= on_tickers
            ib.errorEvent -= on_error
            ib.connectedEvent -= subscribe
            if ib.isConnected():
                for c in contracts:
                    ib.cancelMktData(c)


def _tick(symbol: str | None, tk: Ticker) -> Tick | None:
    if symbol is None:
        return None
    bid, ask, last = (_num(tk.bid), _num(tk.ask), _num(tk.last))
    if last is None and bid is not None and ask is not None:
        last = (bid + ask) / 2
    if last is None:
        return None
    ts = (
        tk.time.timestamp()
        if isinstance(tk.time, dt.datetime) and tk.time.year > 1970
        else time.time()
    )
    return Tick(
        symbol,
        ts,
        bid if bid is not None else last,
        ask if ask is not None else last,
        last,
        _num(tk.lastSize) or 0.0,
    )


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f > 0 else None


def _utc(t: dt.datetime) -> dt.datetime:
    if t.tzinfo is None:
        raise ValueError(f"{t} has no time zone: pass an aware datetime (UTC)")
    return t.astimezone(dt.UTC)


def _to_frame(bars: list[Any]) -> pd.DataFrame:
    if not bars:
        return empty_bars()
    idx = []
    for b in bars:
        d = b.date
        if isinstance(d, dt.datetime):
            idx.append(pd.Timestamp(d if d.tzinfo else d.replace(tzinfo=dt.UTC)).tz_convert("UTC"))
        else:  # a daily bar is a date
            idx.append(pd.Timestamp(d.year, d.month, d.day, tz="UTC"))
    return pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        },
        index=pd.DatetimeIndex(idx, name="ts"),
        dtype=float,
    )
