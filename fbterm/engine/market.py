"""Market data inside the engine: ticks to bars, feeds and their staleness, marks, option quotes.

:class:`MarketState` is what the engine knows about prices; risk, the executor, metrics and the
snapshots all read it. :class:`MarketFeed` is the one way market data gets in: it runs the feed
(a tick source, or the simulated market on its own clock), and for every batch updates prices
and feeds, hands the update to a simulated venue so it can fill, and drives the strategies.
"""

from __future__ import annotations

import asyncio
import math
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fbterm.config import Config
from fbterm.engine.events import ActivityLog
from fbterm.execution.brokers.base import SimulatedVenue
from fbterm.execution.brokers.fills import MarketUpdate
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import Bar, Option, OptionQuote, Position, Tick, instrument_from_key
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.data.simulated import SimulatedMarket


class TickSource(Protocol):
    """Live or replayed market data: batches of ticks, paced by the source."""

    name: str

    def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]: ...


class BarBuilder:
    """Aggregates ticks into fixed-length bars by tick time (aligned to the bar size)."""

    __slots__ = ("_cur", "seconds")

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._cur: dict[str, list[float]] = {}  # symbol -> [start, o, h, l, c, v]

    def on_tick(self, symbol: str, ts: float, price: float, volume: float) -> Bar | None:
        start = ts - (ts % self.seconds)
        cur = self._cur.get(symbol)
        if cur is None:
            self._cur[symbol] = [start, price, price, price, price, volume]
            return None
        if start > cur[0]:
            bar = Bar(symbol, cur[0], cur[1], cur[2], cur[3], cur[4], cur[5])
            self._cur[symbol] = [start, price, price, price, price, volume]
            return bar
        if price > cur[2]:
            cur[2] = price
        if price < cur[3]:
            cur[3] = price
        cur[4] = price
        cur[5] += volume
        return None


@dataclass(slots=True)
class Feed:
    """One symbol's feed: when it last spoke (wall clock), at what price, and whether it is
    considered stale (silent for longer than ``market.stale_after`` while the market is open)."""

    last_wall: float = 0.0
    last_price: float = 0.0
    stale: bool = False


class MarketState:
    """Prices, feeds, recent bars and option quotes: the engine's picture of the market.

    ``simulated`` is the simulated market when the engine runs on one; only it can quote
    options, so without it option marks are unknown and strategies get no option chain.
    """

    def __init__(
        self,
        cfg: Config,
        symbols: Sequence[str],
        simulated: SimulatedMarket | None,
        activity: ActivityLog,
    ) -> None:
        self.config = cfg
        self.simulated = simulated
        self.activity = activity
        self.bars = BarBuilder(cfg.market.bar_seconds)
        self.prices: dict[str, float] = {}
        self.quotes: dict[str, tuple[float, float]] = {}  # best bid and ask, where quoted
        self.feeds: dict[str, Feed] = {s: Feed() for s in symbols}
        self.option_marks: dict[str, OptionQuote] = {}
        self.history: dict[str, deque[Bar]] = {}  # recent closed bars, for hot updates and the UI
        self.last_ts: float | None = None  # the market's clock: the latest update's own time
        self._said_no_chain = False
        # Live option chains (IB market data); set by the engine when its source has them.
        self.chains: ChainSource | None = None
        self._fetching: set[str] = set()
        self._chain_failed: dict[str, float] = {}

    def remember(self, bar: Bar) -> None:
        h = self.history.get(bar.symbol)
        if h is None:
            h = self.history[bar.symbol] = deque(maxlen=self.config.market.history_bars)
        h.append(bar)

    def mark(self, key: str) -> float | None:
        """The price to value ``key`` at: its last trade, or an option's simulated mid."""
        px = self.prices.get(key)
        if px is not None:
            return px
        live = self.option_marks.get(key) if self.simulated is None else None
        if live is not None:
            return live.mid
        if " " in key and self.simulated is not None:
            try:
                inst = instrument_from_key(key)
                if not isinstance(inst, Option):
                    return None
                q = self.option_quote(inst)
            except Exception:
                return None
            return q.mid if q is not None else None
        return None

    def option_quote(self, opt: Option) -> OptionQuote | None:
        """The simulated option quote, priced once per market step (Black–Scholes is not free,
        and marks are read for every exposure and P&L figure)."""
        market = self.simulated
        if market is None:
            return None
        q = self.option_marks.get(opt.key)
        if q is not None and q.ts == market.ts:
            return q
        q = market.option_quote(opt)
        if q is not None:
            self.option_marks[opt.key] = q
        return q

    def option_chain(self, underlying: str) -> Sequence[OptionQuote]:
        """The chain strategies choose option legs from (and, priced, their marks)."""
        if self.simulated is None:
            if self.chains is not None:
                return self._live_chain(underlying, self.chains)
            return self._no_option_chain()
        chain = self.simulated.option_chain(underlying)
        for q in chain:
            self.option_marks[q.instrument.key] = q
        return chain

    def _live_chain(self, underlying: str, chains: ChainSource) -> Sequence[OptionQuote]:
        """The last chain fetched (a refresh starts in the background when it is stale): a
        strategy never waits for IB on the engine thread."""
        chain = chains.cached(underlying) or []
        now = time.monotonic()
        retry = now - self._chain_failed.get(underlying, -math.inf) > CHAIN_RETRY_SECONDS
        spot = self.prices.get(underlying)
        if chains.stale(underlying) and spot and underlying not in self._fetching and retry:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # not on the engine loop (a test driving the engine by hand)
                loop = None
            if loop is not None:
                self._fetching.add(underlying)
                loop.create_task(self._fetch_chain(chains, underlying, spot))
        for q in chain:
            self.option_marks[q.instrument.key] = q
        return chain

    async def _fetch_chain(self, chains: ChainSource, underlying: str, spot: float) -> None:
        try:
            chain = await chains.fetch(underlying, spot)
        except Exception as e:  # the strategy goes on without the option leg; said once a try
            self._chain_failed[underlying] = time.monotonic()
            self.activity.log("warning", "strategy", f"option chain for {underlying}: {e}")
        else:
            self._chain_failed.pop(underlying, None)
            self.activity.log(
                "info", "strategy", f"option chain for {underlying}: {len(chain)} options from IB"
            )
        finally:
            self._fetching.discard(underlying)

    def _no_option_chain(self) -> Sequence[OptionQuote]:
        # Without a simulated market there is no chain to choose from, and a strategy must not
        # invent option contracts a live venue may not list: option legs are skipped.
        if not self._said_no_chain:
            self._said_no_chain = True
            self.activity.log(
                "warning",
                "strategy",
                f"no option chain from {self.config.market.source} market data: "
                "option legs (covered calls) are skipped; stock legs trade",
            )
        return ()

    def gross_exposure(self, positions: Mapping[str, Position]) -> float:
        total = 0.0
        for key, p in positions.items():
            if p.is_flat:
                continue
            px = self.mark(key)
            total += abs(p.quantity * (px if px is not None else p.avg_cost) * p.multiplier)
        return total

    def check_staleness(self, now: float, stale_after: float) -> None:
        """Mark feeds silent for longer than ``stale_after`` seconds stale, and alert (said
        once per silence; asked only while silence means something: market hours)."""
        for sym, f in self.feeds.items():
            if f.last_wall and not f.stale and now - f.last_wall > stale_after:
                f.stale = True
                msg = f"{sym}: no market data for {now - f.last_wall:.1f} s (stale)"
                self.activity.log("warning", "data", msg)
                self.activity.alert(
                    "warning",
                    "Market data stale",
                    f"{msg}; new orders in {sym} are refused until it speaks again",
                    key=f"stale:{sym}",
                )


CHAIN_RETRY_SECONDS = 60.0


class ChainSource(Protocol):
    """Live option chains (fbterm.data.ib_chains.IBOptionChains)."""

    def cached(self, underlying: str) -> list[OptionQuote] | None: ...

    def stale(self, underlying: str) -> bool: ...

    async def fetch(self, underlying: str, spot: float) -> list[OptionQuote]: ...


class RiskInputs:
    """What the risk gate reads, backed by the engine's own state (engine thread only)."""

    def __init__(
        self, market: MarketState, oms: OrderManagement, clock: Callable[[], float]
    ) -> None:
        self.market = market
        self.oms = oms
        self.clock = clock

    def last_price(self, key: str) -> float | None:
        return self.market.mark(key)

    def position(self, key: str) -> float:
        return self.oms.position(key)

    def strategy_position(self, strategy_id: str, key: str) -> float:
        return self.oms.position(key, strategy_id)

    def gross_exposure(self) -> float:
        return self.market.gross_exposure(self.oms.positions)

    def stale_age(self, symbol: str) -> float | None:
        f = self.market.feeds.get(symbol)
        if f is None or not f.stale:
            return None
        return self.clock() - f.last_wall


class MarketFeed:
    """Market data into the engine: the feed loop, and each batch's path through it.

    ``after_step`` runs after every batch, once its journal commit is done (the publisher's
    check for a due snapshot: a snapshot never shows what is not journaled).
    """

    def __init__(
        self,
        cfg: Config,
        symbols: Sequence[str],
        state: MarketState,
        executor: StrategyExecutor,
        oms: OrderManagement,
        journal: Journal,
        venue: SimulatedVenue | None,
        activity: ActivityLog,
        *,
        source: TickSource | None,
        clock: Callable[[], float],
        pace: bool,
        after_step: Callable[[], None],
        admit: Callable[[Bar], bool] = lambda bar: True,
    ) -> None:
        self.config = cfg
        self.symbols = list(symbols)
        self.state = state
        self.executor = executor
        self.oms = oms
        self.journal = journal
        self.venue = venue
        self.activity = activity
        self.source = source
        self.clock = clock
        self.pace = pace
        self.after_step = after_step
        self.admit = admit  # may the strategies trade on this bar (warm-up holds cold ones)
        self.ended = False  # the source said it has nothing more: silence is not staleness
        self.ticks_processed = 0
        self.tick_latencies: deque[float] = deque(maxlen=10_000)  # tick arrival -> order created
        self._errors = 0

    async def run(self) -> None:
        """Take market data until the source ends (or for ever, from the simulated market)."""
        if self.source is not None:
            async for batch in self.source.stream(self.symbols):
                self._guarded(batch)
                await asyncio.sleep(0)
            self.ended = True
            self.activity.log("info", "engine", f"market data from {self.source.name} ended")
            return
        market = self.state.simulated
        if market is None:
            return
        interval = 1.0 / self.config.market.simulated.ticks_per_second
        nxt = time.monotonic()
        while True:
            self._guarded(market.next_ticks())
            if not self.pace:
                await asyncio.sleep(0)
                continue
            nxt += interval
            delay = nxt - time.monotonic()
            if delay < -1.0:
                nxt = time.monotonic()  # fell behind (a pause): don't burst to catch up
            await asyncio.sleep(max(delay, 0.0))

    def _guarded(self, ticks: Sequence[Tick]) -> None:
        # A bug met while processing one batch is reported, and the feed goes on: a dead
        # feed would freeze every price and leave positions unwatched.
        try:
            self.on_ticks(ticks)
        except Exception as e:
            self._errors += 1
            where = traceback.extract_tb(e.__traceback__)[-1]
            msg = f"market data processing failed: {type(e).__name__}: {e} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
            if self._errors <= 20 or self._errors % 1000 == 0:
                self.activity.log("error", "engine", msg)
            self.activity.alert("error", "Engine error", msg, key="feed-error")

    def on_ticks(self, ticks: Sequence[Tick]) -> None:
        """Process market updates (engine thread).

        With an in-process venue (paper) everything one batch causes — orders, acks, fills —
        commits to the journal together at the end of the batch: nothing of it is visible
        outside the engine before then, and the venue itself dies with the process.
        """
        if self.venue is not None:
            with self.journal.group():
                self._on_ticks(ticks)
        else:
            self._on_ticks(ticks)
        self.after_step()  # after the commit: a snapshot never shows what is not journaled

    def _on_ticks(self, ticks: Sequence[Tick]) -> None:
        executor = self.executor
        executor.epoch += 1
        now = self.clock()
        state = self.state
        prices, feeds, oms = state.prices, state.feeds, self.oms
        quotes = state.quotes
        on_market = self.venue.on_market if self.venue is not None else None
        for t in ticks:
            t0 = time.perf_counter()
            sym = t.symbol
            self.ticks_processed += 1
            prices[sym] = t.last
            quotes[sym] = (t.bid, t.ask)
            f = feeds.get(sym)
            if f is None:
                f = feeds[sym] = Feed()
            f.last_wall, f.last_price = now, t.last
            if f.stale:
                f.stale = False
                self.activity.log("info", "data", f"{sym}: market data resumed")
            n_before = oms.orders_total
            # A bar closes when the first price after it arrives; the strategies' orders from
            # it meet that price, as a backtest fills them at the next bar's open.
            bar = state.bars.on_tick(sym, t.ts, t.last, t.volume)
            if bar is not None:
                state.remember(bar)
                if self.admit(bar):
                    executor.on_bar(bar)
                if oms.orders_total != n_before:  # sent: the venue's fill below is not latency
                    self.tick_latencies.append(time.perf_counter() - t0)
                    n_before = oms.orders_total
            if on_market is not None:
                on_market(
                    sym, MarketUpdate(t.ts, t.last, t.last, t.last, t.last, t.volume, t.bid, t.ask)
                )
            executor.on_price(sym, t.last, t.ts)
            if oms.orders_total != n_before:
                self.tick_latencies.append(time.perf_counter() - t0)
        if ticks:
            state.last_ts = ticks[-1].ts

    def on_bars(self, bars: Sequence[Bar]) -> None:
        """Feed closed bars directly (CSV replay, IB 5-second bars)."""
        self.executor.epoch += 1
        now = self.clock()
        state = self.state
        on_market = self.venue.on_market if self.venue is not None else None
        for b in bars:
            state.prices[b.symbol] = b.close
            f = state.feeds.setdefault(b.symbol, Feed())
            f.last_wall, f.last_price, f.stale = now, b.close, False
            if on_market is not None:
                on_market(b.symbol, MarketUpdate.from_bar(b))
            self.executor.on_price(b.symbol, b.close, b.ts)
            state.remember(b)
            if self.admit(b):
                self.executor.on_bar(b)
        if bars:
            state.last_ts = bars[-1].ts
