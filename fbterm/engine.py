"""The engine: one thread, its own asyncio loop, and all the trading state.

Data flow (the seed's): market data -> bars -> StrategyExecutor -> StrategyLevelRisk /
PortfolioLevelRisk -> OrderManagement (journal first) -> broker -> fills -> positions ->
metrics -> snapshots and alerts.

Only this thread mutates orders, positions, P&L and the trading state. Everyone else talks to it
through :meth:`Engine.submit` (a thread-safe command queue that wakes the loop) and listens
through :meth:`Engine.subscribe` (immutable snapshots at a fixed rate). This module never
imports textual, so the engine runs headless and is testable alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import threading
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from fbterm import snapshot as S
from fbterm.config import Config, StrategyConfig
from fbterm.execution.brokers.base import (
    Broker,
    BrokerMessage,
    ConnectionEvent,
    ConnectionState,
)
from fbterm.execution.brokers.fills import MarketUpdate
from fbterm.execution.orders import OrderManagement, OrderQueue, UnknownOrder
from fbterm.journal import Journal
from fbterm.model import (
    Bar,
    Fill,
    IllegalTransition,
    Option,
    OptionQuote,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    Tick,
    TimeInForce,
    instrument_from_key,
)
from fbterm.risk.portfolio import PortfolioLevelRisk, trading_day
from fbterm.snapshot import (
    CommandResult,
    EngineSnapshot,
    FeedStatus,
    LogLine,
    PositionRow,
    RiskView,
    StrategyRow,
    TradingState,
)
from fbterm.strategies.base import Sizing, StrategyInterface
from fbterm.strategies.executor import StrategyExecutor, StrategySlot


class TickSource(Protocol):
    name: str

    def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]: ...


# --------------------------------------------------------------------------------- bars


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


# --------------------------------------------------------------------------- the engine


@dataclass(slots=True)
class _Feed:
    last_wall: float = 0.0
    last_price: float = 0.0
    stale: bool = False


class EngineInputs:
    """What the risk gate reads, backed by the engine's own state (engine thread only)."""

    def __init__(self, engine: Engine):
        self.e = engine

    def last_price(self, key: str) -> float | None:
        return self.e.mark(key)

    def position(self, key: str) -> float:
        return self.e.oms.position(key)

    def strategy_position(self, strategy_id: str, key: str) -> float:
        return self.e.oms.position(key, strategy_id)

    def gross_exposure(self) -> float:
        return self.e.gross_exposure()

    def stale_age(self, symbol: str) -> float | None:
        f = self.e.feeds.get(symbol)
        if f is None or not f.stale:
            return None
        return self.e.clock() - f.last_wall


class Engine:
    """The trading engine. Construct, :meth:`start`, :meth:`submit` commands, :meth:`stop`."""

    def __init__(
        self,
        cfg: Config,
        *,
        broker: Broker | None = None,
        source: TickSource | None = None,
        market: Any | None = None,
        journal: Journal | None = None,
        diagnostics: Any | None = None,
        clock: Callable[[], float] = time.time,
        warmup_bars: int | None = None,
        pace: bool = True,
    ):
        self.config = cfg
        self.clock = clock
        self.pace = pace
        self.market = market
        self.source = source
        self.diagnostics = diagnostics if diagnostics is not None else _default_diagnostics(cfg)
        self.symbols = list(cfg.market.symbols)
        if self.market is None and self.source is None and cfg.market.source == "simulated":
            from fbterm.data.simulated import SimulatedMarket

            self.market = SimulatedMarket(self.symbols, cfg.market.simulated)
        self.journal = journal or Journal(cfg.journal_path, synchronous=cfg.journal.synchronous)
        self.broker: Broker = broker or self._make_broker()
        self._group_commits = bool(getattr(self.broker, "in_process", False))
        if self.source is None and cfg.market.source != "simulated":
            self.source = self._make_source()
        self.inputs = EngineInputs(self)
        self.risk = PortfolioLevelRisk(
            cfg.risk, self.inputs, clock=clock, on_state_change=self._on_risk_state
        )
        self.oms = OrderManagement(self.broker, self.journal, risk_check=self._gate, clock=clock)
        self.oms.subscribe(self._on_oms_event)
        self._fills_by_strategy: dict[str, int] = {}
        for f in self.oms.fills:
            self._fills_by_strategy[f.strategy_id] = (
                self._fills_by_strategy.get(f.strategy_id, 0) + 1
            )
        self.queue = OrderQueue(maxsize=10_000)
        commission_fraction = (
            cfg.broker.paper.commission_fraction
            if cfg.broker.paper.commission == "percent"
            else 0.0
        )
        self.executor = StrategyExecutor(
            self.oms,
            commission_fraction=commission_fraction,
            option_chain=self._option_chain if self.market is not None else self._no_option_chain,
            marks=self.mark,
            log=self.log,
            clock=clock,
            queue=self.queue,
        )
        self.executor.on_error = self._on_strategy_error
        self.bars = BarBuilder(cfg.market.bar_seconds)
        from fbterm.metrics import MetricsCalculation

        self.metrics = MetricsCalculation(
            rolling_window=cfg.metrics.rolling_window,
            timezone=cfg.market.timezone,
        )
        self.metrics_snapshot: Any = None
        self._metrics_stored = 0.0
        self._metrics_at = 0.0
        self._report_day: Any = None
        self.history: dict[str, deque[Bar]] = {}  # recent closed bars, for hot updates and the UI
        self._strategy_configs: dict[str, StrategyConfig] = {}
        self.control: Any = None
        self.broker_positions: list[Any] = []
        self.feeds: dict[str, _Feed] = {s: _Feed() for s in self.symbols}
        self.prices: dict[str, float] = {}
        self.option_marks: dict[str, OptionQuote] = {}
        self.warmup_bars = warmup_bars
        self.connection = ConnectionState.DISCONNECTED
        self.connection_message = ""
        self.ticks_processed = 0
        self._feed_errors = 0
        self._activity_failed = False
        self.tick_latencies: deque[float] = deque(maxlen=10_000)  # tick arrival -> order created
        self._log: deque[LogLine] = deque(maxlen=500)
        self._log_seq = 0
        self._results: deque[CommandResult] = deque(maxlen=50)
        self._commands: queue.SimpleQueue[S.Command] = queue.SimpleQueue()
        self._subscribers: list[list[Any]] = []  # [callback, min_interval, last_sent]
        self._snapshot: EngineSnapshot | None = None
        self._snap_seq = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_requested = False
        self._exit_reasons: dict[str, str] = {}
        self._operator_exit = False  # set while the operator's flatten sends its orders
        self._load_strategies()
        if self.warmup_bars is None:
            longest = max((sl.strategy.warmup() for sl in self.executor.slots.values()), default=0)
            self.warmup_bars = longest + 5 if self.market is not None else 0

    # ------------------------------------------------------------------ construction
    def _make_broker(self) -> Broker:
        cfg = self.config
        if cfg.broker.kind == "ib":
            from fbterm.execution.brokers.ib import BrokerIntegration

            # IB order ids must never go backwards, even if the gateway's nextValidId does
            # after a restart: start above every id the journal has seen.
            row = self.journal.conn.execute(
                "SELECT MAX(CAST(json_extract(data, '$.broker_id') AS INTEGER)) FROM order_events"
            ).fetchone()
            return BrokerIntegration(cfg.broker.ib, min_order_id=int(row[0] or 0) + 1)  # type: ignore[return-value]
        from fbterm.execution.brokers.paper import PaperBroker

        pricer = self._cached_option_quote if self.market is not None else None
        return PaperBroker(
            cfg.broker.paper, symbols=self.symbols, option_pricer=pricer, clock=self.clock
        )

    def _make_source(self) -> TickSource:
        """Market data for ``market.source = csv | ib``, through the seed's DataRetrieval."""
        from fbterm.data.retrieval import CSVSource, DataRetrieval
        from fbterm.data.storage import DataStorage

        cfg = self.config
        storage = DataStorage(cfg.data_dir, cfg.market.timezone)
        if cfg.market.source == "csv":
            rt: Any = CSVSource(
                cfg.market.csv.path, cfg.market.csv.speed, timezone=cfg.market.timezone
            )
        else:
            from fbterm.data.ib_source import IBSource

            rt = IBSource(
                self.broker,
                market_data_type=cfg.broker.ib.market_data_type,
                request_timeout=cfg.broker.ib.request_timeout,
            )
        # IB also serves history (for warming strategies up), cached through DataStorage.
        historical = rt if cfg.market.source == "ib" else None
        retrieval = DataRetrieval(storage, historical=historical, realtime=rt)
        self.retrieval = retrieval

        class _RetrievalFeed:
            name = rt.name

            def stream(self, symbols: Sequence[str]) -> AsyncIterator[list[Tick]]:
                return retrieval.fetch_realtime_data(symbols)

        return _RetrievalFeed()

    def _load_strategies(self) -> None:
        from fbterm.strategies import create_strategy

        for sc in self.config.strategies:
            strat = create_strategy(sc.cls, sc.name, sc.params)
            self._strategy_configs[sc.name] = sc
            symbols = sc.symbols or self.symbols
            self.executor.add_strategy(
                sc.name,
                strat,
                symbols,
                sc.capital,
                spec=sc.cls,
                sizing=self._sizing(sc.sizing, sc.capital, len(symbols)),
                risk=sc.risk,
                enabled=sc.enabled,
            )

    @staticmethod
    def _sizing(mode: str, capital: float, n_symbols: int) -> Sizing:
        n = max(n_symbols, 1)
        if mode == "fixed":
            return Sizing("fixed", 100.0)
        if mode == "cash":
            return Sizing("cash", capital / n)
        if mode == "all_in":
            return Sizing("all_in", 1.0)
        return Sizing("fraction", 0.95 / n)

    def add_strategy(
        self,
        name: str,
        strategy: StrategyInterface,
        symbols: Sequence[str],
        capital: float,
        **kw: Any,
    ) -> StrategySlot:
        """Register a strategy before :meth:`start` (tests and embedding)."""
        return self.executor.add_strategy(name, strategy, symbols, capital, **kw)

    # ------------------------------------------------------------------ public API (any thread)
    def start(self, timeout: float = 60.0, *, control: bool = False) -> None:
        """Start the engine thread; returns when it trades, raises if it cannot start.

        ``control`` also serves the local control socket (``fbterm update`` talks to it).
        """
        if self._thread is not None:
            raise RuntimeError("engine already started")
        if control:
            self._start_control()
        self._thread = threading.Thread(target=self._thread_main, name="fbterm-engine", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"engine did not start within {timeout:g} s")
        if self._startup_error is not None:
            self._thread.join(5)
            err = self._startup_error
            if isinstance(err, ConnectionError | OSError | TimeoutError):
                raise ConnectionError(str(err) or type(err).__name__) from err
            raise err

    def _start_control(self) -> None:
        from fbterm.control import ControlError, ControlServer
        from fbterm.ops import UpdatesManagement

        updates = UpdatesManagement(self.diagnostics)

        def update(req: dict[str, Any]) -> Any:
            return self.call(lambda: updates.handle_request(self, req), timeout=60)

        def status(req: dict[str, Any]) -> Any:
            from fbterm.headless import summary_dict

            return summary_dict(self.build_snapshot_threadsafe())

        def command(req: dict[str, Any]) -> Any:
            name = str(req.get("name", ""))
            simple = {
                "halt": S.Halt,
                "reduce": S.ReduceOnly,
                "resume": S.Resume,
                "cancel_all": S.CancelAll,
                "flatten": S.FlattenAll,
                "rebalance": S.Rebalance,
            }
            if name not in simple:
                raise ValueError(f"unknown command {name!r} (known: {', '.join(simple)})")
            return {"command_id": self.submit(simple[name](source="control"))}

        server = ControlServer(
            self.config.control_socket_path,
            {"update": update, "status": status, "command": command},
        )
        try:
            server.start()
        except (ControlError, OSError) as e:
            self.log("warning", "engine", f"control socket not served: {e}")
            return
        self.control = server

    def stop(self, timeout: float = 10.0) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                self.control.stop()
            self.control = None
        if self._thread is None or self._loop is None:
            self._close_journal()
            return
        self._stop_requested = True
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._wake_stop)
        self._thread.join(timeout)

    def submit(self, cmd: S.Command) -> int:
        """Queue a command for the engine thread (thread-safe, never blocks)."""
        self._commands.put(cmd)
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._drain_commands)
        return cmd.command_id

    def subscribe(
        self, callback: Callable[[EngineSnapshot], None], hz: float = 10.0
    ) -> Callable[[], None]:
        """Call ``callback(snapshot)`` on the engine thread at most ``hz`` times a second.

        Keep the callback tiny (a Textual app: ``post_message`` only). Returns unsubscribe.
        """
        entry = [callback, 1.0 / max(hz, 0.1), 0.0]
        self._subscribers.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._subscribers.remove(entry)

        return unsubscribe

    def latest(self) -> EngineSnapshot | None:
        return self._snapshot

    def call(self, fn: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Run ``fn`` on the engine thread and return its result (for tests, tools, shutdown).

        Not for the UI's hot path: it blocks the caller until the engine has run ``fn``.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or not self.running:
            return fn()

        async def _run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(_run(), loop).result(timeout)

    def stop_feed(self) -> None:
        """Stop taking market data (thread-safe); orders, commands and the venue stay up.

        A final summary taken after this describes a state that no new tick can change.
        """

        def _cancel() -> None:
            task = getattr(self, "_feed_task", None)
            if task is not None:
                task.cancel()

        self.call(_cancel)

    def build_snapshot_threadsafe(self) -> EngineSnapshot:
        def both() -> EngineSnapshot:
            # Taken together on the engine thread, so the venue's view (IB: every position,
            # not only ours) and ours describe the same moment.
            self.broker_positions = self._safe_broker_positions()
            return self.build_snapshot()

        return self.call(both)

    def _safe_broker_positions(self) -> list[Any]:
        try:
            return list(self.broker.query_positions())
        except Exception:
            return []

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped.is_set()

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    # ------------------------------------------------------------------ the thread
    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as e:  # reported to start() or logged; the thread must end cleanly
            if not self._ready.is_set():
                self._startup_error = e
                self._ready.set()
            else:
                self.log("error", "engine", f"engine stopped on error: {type(e).__name__}: {e}")
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
            self._close_journal()
            if self.diagnostics is not None and hasattr(self.diagnostics, "close"):
                with contextlib.suppress(Exception):
                    self.diagnostics.close(timeout=2.0)
            self._stopped.set()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        if self._stop_requested:
            return
        await self.broker.start()
        self.connection = self.broker.connection_state
        self.log("info", "engine", f"connected to {self.broker.name} ({self.connection.value})")
        self.reconcile()
        self.warm_up()
        await self.warm_up_from_history()
        self._publish(force=True)
        self._ready.set()
        self._drain_commands()
        self._feed_task = asyncio.create_task(self._feed_loop(), name="feed")
        tasks = [
            self._feed_task,
            asyncio.create_task(self._housekeeping_loop(), name="housekeeping"),
            asyncio.create_task(self._publish_loop(), name="publish"),
        ]
        try:
            await self._stop_event.wait()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
            self._stop_requested = True  # from here on a disconnect is ours, not news
            if self.oms.fills:
                self.update_metrics(store=True)
                self.write_daily_report()
            self.log("info", "engine", "engine stopped")
            self._publish(force=True, running=False)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.broker.stop(), 5)

    def _wake_stop(self) -> None:
        ev = getattr(self, "_stop_event", None)
        if ev is not None:
            ev.set()

    def _close_journal(self) -> None:
        with contextlib.suppress(Exception):
            self.journal.close()

    # ------------------------------------------------------------------ start-up
    def reconcile(self) -> list[str]:
        """Compare the journal with the venue after a (re)start; report every difference."""
        notes: list[str] = []
        paper = getattr(self.broker, "in_process", False)
        if paper:
            # A DAY order does not outlive its trading day; the paper venue expires it at a
            # restart the way a real venue would have at the close.
            today = trading_day(self.clock())
            for o in list(self.oms.open.values()):
                if o.tif is TimeInForce.DAY and trading_day(o.created_ts) < today:
                    with contextlib.suppress(IllegalTransition):
                        self.oms.close_locally(
                            o.client_order_id,
                            OrderStatus.CANCELLED,
                            "expired: DAY order from an earlier session",
                        )
                    notes.append(f"{o.client_order_id}: DAY order from an earlier session expired")
        restored_open = list(self.oms.open.values())
        if paper and hasattr(self.broker, "restore"):
            self.broker.restore(
                self.oms.fills,
                [o for o in restored_open if o.status is not OrderStatus.PENDING_SUBMIT],
            )
        for o in restored_open:
            if o.status is OrderStatus.PENDING_SUBMIT:
                # Journaled but never acknowledged: the process died between journal and venue.
                msg = "lost before the venue acknowledged it (restart)"
                with contextlib.suppress(IllegalTransition):
                    self.oms.close_locally(o.client_order_id, OrderStatus.REJECTED, msg)
                notes.append(f"{o.client_order_id}: {msg}")
        try:
            venue_open = {
                b.client_order_id for b in self.broker.query_open_orders() if b.client_order_id
            }
        except Exception as e:
            venue_open = None
            notes.append(f"could not query open orders: {e}")
        if venue_open is not None:
            for o in list(self.oms.open.values()):
                if o.client_order_id not in venue_open:
                    notes.append(
                        f"{o.client_order_id}: open in the journal, unknown to {self.broker.name}"
                    )
            for cid in venue_open - set(self.oms.orders):
                notes.append(f"{cid}: working at {self.broker.name}, not in the journal")
        try:
            venue_pos = {p.instrument.key: p.quantity for p in self.broker.query_positions()}
            ours = {k: p.quantity for k, p in self.oms.positions.items() if not p.is_flat}
            for key in sorted(set(venue_pos) | set(ours)):
                a, b = ours.get(key, 0.0), venue_pos.get(key, 0.0)
                if abs(a - b) > 1e-9:
                    notes.append(f"position {key}: journal {a:g}, {self.broker.name} {b:g}")
        except Exception as e:
            notes.append(f"could not query positions: {e}")
        n_orders, n_fills = len(self.oms.orders), len(self.oms.fills)
        if n_orders or n_fills:
            self.log(
                "info",
                "engine",
                f"journal restored: {n_orders} orders, {n_fills} fills, {len(self.oms.open)} open",
            )
        for n in notes:
            self.log("warning", "reconcile", n)
        return notes

    def warm_up(self) -> None:
        """Give strategies history so they trade from the first live bar (simulated market)."""
        if self.market is None or self.warmup_bars <= 0:
            return
        bars_needed = self.warmup_bars
        produced = 0
        guard = bars_needed * 200
        while produced < bars_needed and guard > 0:
            guard -= 1
            for t in self.market.next_ticks():
                bar = self.bars.on_tick(t.symbol, t.ts, t.last, t.volume)
                self.prices[t.symbol] = t.last
                if bar is not None:
                    self._remember(bar)
                    self.executor.on_bar(bar, trade=False)
                    if t.symbol == self.symbols[0]:
                        produced += 1
        self.executor.forget_targets()

    async def warm_up_from_history(self) -> int:
        """Live data: feed strategies recent history (through DataRetrieval, so it is cached)
        so they trade from the first live bar instead of waiting for their windows to fill.

        A failure is logged and the engine starts cold; it is never fatal.
        """
        retrieval = getattr(self, "retrieval", None)
        if retrieval is None or retrieval.historical is None or not self.executor.slots:
            return 0
        import pandas as pd

        longest = max(sl.strategy.warmup() for sl in self.executor.slots.values())
        bars_wanted = 2 * longest + 5
        secs = self.config.market.bar_seconds
        bar_size = f"{int(secs)}s" if secs < 60 or secs % 60 else f"{int(secs // 60)}m"
        end = pd.Timestamp(self.clock(), unit="s", tz="UTC").floor(f"{int(secs)}s")
        start = end - pd.Timedelta(seconds=secs * bars_wanted)
        fed = 0
        for sym in self.symbols:
            try:
                df = await asyncio.wait_for(
                    retrieval.afetch_historical_data(sym, start, end, bar_size),
                    self.config.broker.ib.request_timeout,
                )
            except Exception as e:
                self.log(
                    "warning",
                    "data",
                    f"{sym}: no history to warm strategies up ({type(e).__name__}: {e})",
                )
                continue
            for ts, row in zip(df.index, df.itertuples(index=False), strict=True):
                bar = Bar(sym, ts.timestamp(), row.open, row.high, row.low, row.close, row.volume)
                self._remember(bar)
                self.prices[sym] = bar.close
                self.executor.on_bar(bar, trade=False)
                fed += 1
        self.executor.forget_targets()
        if fed:
            self.log("info", "data", f"strategies warmed up on {fed} historical {bar_size} bars")
        return fed

    # ------------------------------------------------------------------ market data
    async def _feed_loop(self) -> None:
        if self.source is not None:
            async for batch in self.source.stream(self.symbols):
                self._guarded_ticks(batch)
                await asyncio.sleep(0)
            self.log("info", "engine", f"market data from {self.source.name} ended")
            return
        if self.market is None:
            return
        interval = 1.0 / self.config.market.simulated.ticks_per_second
        nxt = time.monotonic()
        while True:
            self._guarded_ticks(self.market.next_ticks())
            if not self.pace:
                await asyncio.sleep(0)
                continue
            nxt += interval
            delay = nxt - time.monotonic()
            if delay < -1.0:
                nxt = time.monotonic()  # fell behind (a pause): don't burst to catch up
            await asyncio.sleep(max(delay, 0.0))

    def _guarded_ticks(self, ticks: Sequence[Tick]) -> None:
        # A bug met while processing one batch is reported, and the feed goes on: a dead
        # feed would freeze every price and leave positions unwatched.
        try:
            self.on_ticks(ticks)
        except Exception as e:
            self._feed_errors += 1
            where = traceback.extract_tb(e.__traceback__)[-1]
            msg = f"market data processing failed: {type(e).__name__}: {e} ({where.filename.rsplit('/', 1)[-1]}:{where.lineno})"
            if self._feed_errors <= 20 or self._feed_errors % 1000 == 0:
                self.log("error", "engine", msg)
            self._alert("error", "Engine error", msg, key="feed-error")

    def on_ticks(self, ticks: Sequence[Tick]) -> None:
        """Process market updates (engine thread). Public so benchmarks can drive it directly.

        With an in-process venue (paper) everything one batch causes — orders, acks, fills —
        commits to the journal together at the end of the batch: nothing of it is visible
        outside the engine before then, and the venue itself dies with the process.
        """
        if self._group_commits:
            with self.journal.group():
                self._on_ticks(ticks)
        else:
            self._on_ticks(ticks)
        self._maybe_publish()  # after the commit: a snapshot never shows what is not journaled

    def _on_ticks(self, ticks: Sequence[Tick]) -> None:
        self.executor.epoch += 1
        now = self.clock()
        paper = getattr(self.broker, "on_market", None)
        for t in ticks:
            t0 = time.perf_counter()
            sym = t.symbol
            self.ticks_processed += 1
            self.prices[sym] = t.last
            f = self.feeds.get(sym)
            if f is None:
                f = self.feeds[sym] = _Feed()
            f.last_wall, f.last_price = now, t.last
            if f.stale:
                f.stale = False
                self.log("info", "data", f"{sym}: market data resumed")
            if paper is not None:
                paper(
                    sym, MarketUpdate(t.ts, t.last, t.last, t.last, t.last, t.volume, t.bid, t.ask)
                )
            n_before = self.oms_count()
            self.executor.on_price(sym, t.last, t.ts)
            bar = self.bars.on_tick(sym, t.ts, t.last, t.volume)
            if bar is not None:
                self._remember(bar)
                self.executor.on_bar(bar)
            if self.oms_count() != n_before:
                self.tick_latencies.append(time.perf_counter() - t0)

    def _remember(self, bar: Bar) -> None:
        h = self.history.get(bar.symbol)
        if h is None:
            h = self.history[bar.symbol] = deque(maxlen=self.config.market.history_bars)
        h.append(bar)

    def oms_count(self) -> int:
        return len(self.oms.orders)

    def on_bars(self, bars: Sequence[Bar]) -> None:
        """Feed closed bars directly (CSV replay, IB 5-second bars)."""
        self.executor.epoch += 1
        paper = getattr(self.broker, "on_market", None)
        now = self.clock()
        for b in bars:
            self.prices[b.symbol] = b.close
            f = self.feeds.setdefault(b.symbol, _Feed())
            f.last_wall, f.last_price, f.stale = now, b.close, False
            if paper is not None:
                paper(b.symbol, MarketUpdate.from_bar(b))
            self.executor.on_price(b.symbol, b.close, b.ts)
            self._remember(b)
            self.executor.on_bar(b)

    def mark(self, key: str) -> float | None:
        px = self.prices.get(key)
        if px is not None:
            return px
        if " " in key and self.market is not None:
            try:
                q = self._cached_option_quote(instrument_from_key(key))  # type: ignore[arg-type]
            except Exception:
                return None
            return q.mid if q is not None else None
        return None

    def _cached_option_quote(self, opt: Option) -> OptionQuote | None:
        """The simulated option quote, priced once per market step (Black–Scholes is not free,
        and marks are read for every exposure and P&L figure)."""
        q = self.option_marks.get(opt.key)
        now = self.market.ts  # type: ignore[union-attr]
        if q is not None and q.ts == now:
            return q
        q = self.market.option_quote(opt)  # type: ignore[union-attr]
        if q is not None:
            self.option_marks[opt.key] = q
        return q

    def _no_option_chain(self, underlying: str) -> Sequence[OptionQuote]:
        # Without a simulated market there is no chain to choose from, and a strategy must not
        # invent option contracts a live venue may not list: option legs are skipped.
        if not getattr(self, "_said_no_chain", False):
            self._said_no_chain = True
            self.log(
                "warning",
                "strategy",
                f"no option chain from {self.config.market.source} market data: "
                "option legs (covered calls) are skipped; stock legs trade",
            )
        return ()

    def _option_chain(self, underlying: str) -> Sequence[OptionQuote]:
        chain = self.market.option_chain(underlying)  # type: ignore[union-attr]
        for q in chain:
            self.option_marks[q.instrument.key] = q
        return chain

    def gross_exposure(self) -> float:
        total = 0.0
        for key, p in self.oms.positions.items():
            if p.is_flat:
                continue
            px = self.mark(key)
            total += abs(p.quantity * (px if px is not None else p.avg_cost) * p.multiplier)
        return total

    def equity(self) -> float:
        try:
            return self.broker.query_account_details().equity
        except Exception:
            return self.risk.equity

    # ------------------------------------------------------------------ risk
    def _gate(self, order: Order) -> str | None:
        return self.risk.check_order(order, operator=self._operator_exit)

    def _on_risk_state(self, state: TradingState, reason: str) -> None:
        self.executor.set_halted(state is TradingState.HALTED)
        if state is TradingState.HALTED:
            self.log("error", "risk", f"TRADING HALTED: {reason}")
            self._alert(
                "critical",
                "Trading halted",
                f"fbterm halted trading: {reason}",
                key=f"halt:{reason[:40]}",
            )
            if self.config.risk.cancel_orders_on_halt:
                n = self._cancel_all("halt")
                if n:
                    self.log("warning", "risk", f"cancelled {n} open orders on halt")
        elif state is TradingState.REDUCING:
            self.log("warning", "risk", f"REDUCE-ONLY: {reason}")
        else:
            self.log("info", "risk", "trading resumed (ACTIVE)")

    # ------------------------------------------------------------------ events
    def _on_oms_event(self, kind: str, obj: object) -> None:
        if kind == "fill":
            f: Fill = obj  # type: ignore[assignment]
            self._fills_by_strategy[f.strategy_id] = (
                self._fills_by_strategy.get(f.strategy_id, 0) + 1
            )
            self.log(
                "info",
                "fill",
                f"{f.strategy_id}: {f.side.value} {f.quantity:g} {f.instrument.key} "
                f"@ {f.price:,.4g} (comm {f.commission:.2f})",
                **f.to_dict(),
            )
        elif kind == "order":
            o: Order = obj  # type: ignore[assignment]
            if o.status is OrderStatus.REJECTED:
                self._alert(
                    "warning",
                    "Order rejected",
                    f"{o.client_order_id} {o.side.value} {o.quantity:g} "
                    f"{o.symbol} ({o.strategy_id}): {o.reason}",
                    key=f"reject:{o.strategy_id}:{o.reason[:30]}",
                )
            # Every order event goes to the activity log (not the pane: fills already say it).
            self._activity(
                "order",
                f"{o.client_order_id} {o.status.value}" + (f": {o.reason}" if o.reason else ""),
                order_id=o.client_order_id,
                status=o.status.value,
                reason=o.reason,
                strategy=o.strategy_id,
                symbol=o.symbol,
                side=o.side.value,
                qty=o.quantity,
                filled=o.filled_quantity,
                order_type=o.order_type.value,
                lmt=o.limit_price,
                stp=o.stop_price,
            )
        elif kind == "message":
            m: BrokerMessage = obj  # type: ignore[assignment]
            self.log(
                m.level if m.level in ("info", "warning", "error") else "warning",
                "broker",
                f"[{m.code}] {m.message}" if m.code else m.message,
            )
        elif kind == "connection":
            c: ConnectionEvent = obj  # type: ignore[assignment]
            self.connection = c.state
            self.connection_message = c.message
            fine = (
                c.state in (ConnectionState.CONNECTED, ConnectionState.READ_ONLY)
                or self._stop_requested
            )
            level = "info" if fine else "error"
            self.log(level, "broker", f"connection {c.state.value}: {c.message}")
            if c.state is ConnectionState.DISCONNECTED and not self._stop_requested:
                self._alert(
                    "error", "Broker disconnected", c.message or "connection lost", key="disconnect"
                )

    def _on_strategy_error(self, slot: StrategySlot, e: BaseException) -> None:
        self._alert(
            "error", f"Strategy {slot.name} stopped", slot.error, key=f"strategy:{slot.name}"
        )

    # ------------------------------------------------------------------ commands
    def _drain_commands(self) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                ok, msg = self._handle(cmd)
            except (OrderError, IllegalTransition, UnknownOrder, KeyError, ValueError) as e:
                # A plain KeyError's str() is its repr; UnknownOrder's is already a sentence.
                ok, msg = False, str(e.args[0] if type(e) is KeyError and e.args else e)
            except Exception as e:  # a command must never kill the engine
                ok, msg = False, f"{type(e).__name__}: {e}"
            res = CommandResult(cmd.command_id, ok, msg, self.clock())
            self._results.append(res)
            self.log(
                "info" if ok else "warning",
                "command",
                ("OK " if ok else "FAILED ") + msg,
                command=type(cmd).__name__,
                ok=ok,
                source=cmd.source,
                command_id=cmd.command_id,
            )
            self._publish(force=True)

    def _handle(self, cmd: S.Command) -> tuple[bool, str]:
        if isinstance(cmd, S.Halt):
            if self.risk.halt_trading(f"{cmd.reason}"):
                return True, f"halt: trading HALTED ({cmd.reason})"
            return False, "halt: already halted"
        if isinstance(cmd, S.ReduceOnly):
            if self.risk.reduce_only(cmd.reason):
                return True, "reduce-only: only orders that shrink positions pass"
            return False, f"reduce-only: trading is {self.risk.state.value}"
        if isinstance(cmd, S.Resume):
            if self.risk.resume():
                return True, "resume: trading ACTIVE"
            return False, "resume: trading is already ACTIVE"
        if isinstance(cmd, S.NewOrder):
            return self._new_order(cmd)
        if isinstance(cmd, S.CancelOrder):
            o = self.oms.cancel_order(cmd.client_order_id)
            return True, f"cancel {o.client_order_id}: {o.status.value}"
        if isinstance(cmd, S.CancelAll):
            n = self._cancel_all("operator")
            return True, f"cancel all: {n} orders cancelled"
        if isinstance(cmd, S.ModifyOrder):
            o = self.oms.modify_order(
                cmd.client_order_id,
                quantity=cmd.quantity,
                order_type=cmd.order_type,
                limit_price=cmd.limit_price,
                stop_price=cmd.stop_price,
            )
            terms = f"{o.quantity:g} {o.order_type.value}"
            if o.limit_price is not None:
                terms += f" lmt {o.limit_price:g}"
            if o.stop_price is not None:
                terms += f" stp {o.stop_price:g}"
            return True, f"modify {o.client_order_id}: {terms}"
        if isinstance(cmd, S.FlattenAll):
            return self._flatten(cmd)
        if isinstance(cmd, S.PauseStrategy):
            self.executor.pause_strategy(cmd.name)
            return True, f"strategy {cmd.name} paused"
        if isinstance(cmd, S.ResumeStrategy):
            if self.risk.state is TradingState.HALTED:
                return False, f"strategy {cmd.name}: trading is HALTED; resume trading first"
            self.executor.resume_strategy(cmd.name)
            return True, f"strategy {cmd.name} running"
        if isinstance(cmd, S.UpdateStrategy):
            return self._update_strategy(cmd)
        if isinstance(cmd, S.Rebalance):
            return self._rebalance()
        if isinstance(cmd, S.Stop):
            self._stop_event.set()
            return True, "stopping"
        return False, f"unknown command {type(cmd).__name__}"

    def _new_order(self, cmd: S.NewOrder) -> tuple[bool, str]:
        sym = cmd.symbol.strip().upper() if " " not in cmd.symbol.strip() else cmd.symbol.strip()
        inst = instrument_from_key(sym)
        if inst.underlying not in self.symbols:
            return (
                False,
                f"new order: unknown symbol {inst.underlying!r} (trading {', '.join(self.symbols)})",
            )
        sig = Signal(
            cmd.strategy_id,
            inst,
            cmd.side,
            cmd.quantity,
            cmd.order_type,
            cmd.limit_price,
            cmd.stop_price,
            cmd.tif,
            signal_price=self.mark(inst.key),
            ts=self.clock(),
            reason="operator",
        )
        o = self.oms.create_order(sig)
        desc = f"{o.client_order_id} {o.side.value} {o.quantity:g} {o.symbol} {o.order_type.value}"
        if o.status is OrderStatus.REJECTED:
            return False, f"new order {desc} rejected: {o.reason}"
        return True, f"new order {desc}: {o.status.value}"

    def _cancel_all(self, why: str) -> int:
        n = 0
        for o in list(self.oms.open.values()):
            if o.status is OrderStatus.PENDING_CANCEL:
                continue
            try:
                self.oms.cancel_order(o.client_order_id)
                n += 1
            except Exception as e:
                self.log("error", "order", f"cancel {o.client_order_id} ({why}) failed: {e}")
        return n

    def _flatten(self, cmd: S.FlattenAll) -> tuple[bool, str]:
        self._cancel_all("flatten")
        sent, rejected = 0, []
        for (sid, key), p in list(self.oms.strategy_positions.items()):
            if p.is_flat:
                continue
            side = Side.SELL if p.quantity > 0 else Side.BUY
            last = self.mark(key)
            kw: dict[str, Any] = {}
            otype = cmd.order_type
            if otype is OrderType.LIMIT:
                if last is None:
                    rejected.append(f"{key}: no price for a limit")
                    continue
                off = cmd.limit_offset_pct / 100
                kw["limit_price"] = round(last * (1 - off if side is Side.SELL else 1 + off), 2)
            sig = Signal(
                sid,
                p.instrument,
                side,
                abs(p.quantity),
                otype,
                tif=TimeInForce.DAY,
                signal_price=last,
                ts=self.clock(),
                reason="flatten",
                **kw,
            )
            # Getting flat is what a halt is for: the operator's closing orders pass the gate
            # in any trading state (they can only shrink positions).
            self._operator_exit = True
            try:
                o = self.oms.create_order(sig)
            finally:
                self._operator_exit = False
            slot = self.executor.slots.get(sid)
            if slot is not None:
                slot.instance(p.instrument.underlying).forget_target(p.instrument.underlying)
            if o.status is OrderStatus.REJECTED:
                rejected.append(f"{key}: {o.reason}")
            else:
                sent += 1
        msg = f"flatten: {sent} closing orders sent"
        if rejected:
            msg += f"; {len(rejected)} refused ({'; '.join(rejected)})"
        return not rejected, msg

    def _update_strategy(self, cmd: S.UpdateStrategy) -> tuple[bool, str]:
        from fbterm.ops import UpdatesManagement

        res = UpdatesManagement(self.diagnostics).apply_update(
            self,
            strategy=cmd.name,
            params=dict(cmd.params) or None,
            code=cmd.cls,
        )
        return bool(res.ok), res.message

    # -- the UpdatableEngine protocol (fbterm.ops.UpdatesManagement); engine thread only ----
    def strategy_names(self) -> list[str]:
        return list(self.executor.slots)

    def strategy_config(self, name: str) -> StrategyConfig:
        if name not in self.executor.slots:
            raise KeyError(name)
        sc = self._strategy_configs.get(name)
        if sc is None:
            slot = self.executor.slots[name]
            sc = StrategyConfig(
                name=name,
                cls=slot.spec,
                symbols=list(slot.symbols),
                capital=slot.capital,
                params=dict(slot.strategy.p),
            )
            self._strategy_configs[name] = sc
        return sc

    def strategy(self, name: str) -> StrategyInterface:
        return self.executor.strategy(name)

    def build_strategy(self, config: StrategyConfig) -> StrategyInterface:
        from fbterm.strategies import create_strategy

        return create_strategy(config.cls, config.name, config.params)

    def validate_strategy(self, name: str, strategy: StrategyInterface) -> None:
        """Dry run on the bars the engine has seen: analyze must give a target per bar."""
        from fbterm.strategies.base import bars_frame

        slot = self.executor.slots[name]
        for sym in slot.symbols:
            bars = list(self.history.get(sym, ()))
            if not bars:
                continue
            frame = bars_frame(bars)
            sig = strategy.analyze(frame)
            if "target" not in getattr(sig, "columns", ()) or len(sig) != len(frame):
                raise ValueError(f"{name}: analyze() on {sym} must return a 'target' per bar")

    def pause_strategy(self, name: str) -> None:
        self.executor.pause_strategy(name)

    def resume_strategy(self, name: str) -> None:
        self.executor.resume_strategy(name)

    def replace_strategy(
        self, name: str, new_strategy: StrategyInterface, config: StrategyConfig
    ) -> StrategyInterface:
        slot = self.executor.slots[name]
        # Warm the new objects on the bars their predecessors saw, so they trade from the next bar.
        old = self.executor.replace_strategy(
            name, new_strategy, {sym: list(self.history.get(sym, ())) for sym in slot.symbols}
        )
        slot.spec = config.cls
        if config.capital != slot.capital:
            self.executor.scale_strategy(name, config.capital)
        if config.risk != self.strategy_config(name).risk:
            from fbterm.risk.strategy import StrategyLevelRisk

            slot.risk = StrategyLevelRisk(name, config.risk)
        self._strategy_configs[name] = config
        return old

    def _rebalance(self) -> tuple[bool, str]:
        try:
            from fbterm.metrics import Optimization
        except ImportError as e:  # pragma: no cover
            return False, f"rebalance unavailable: {e}"
        slots = self.executor.slots
        res = Optimization().apply_half_kelly(
            self.executor,
            {n: [eq for _, eq in s.history] for n, s in slots.items()},
            cap=self.config.metrics.kelly_cap,
            min_observations=self.config.metrics.kelly_min_observations,
            current={n: s.capital for n, s in slots.items()},
        )
        if not res.applied:
            return True, f"rebalance: no change ({res.reason})"
        moves = ", ".join(
            f"{n} {res.old_allocations[n]:,.0f} -> {res.new_allocations[n]:,.0f}"
            for n in res.new_allocations
        )
        return True, f"rebalance (half Kelly): {moves}"

    # ------------------------------------------------------------------ housekeeping
    async def _housekeeping_loop(self) -> None:
        stale_after = self.config.market.stale_after
        last_rebalance = self.clock()
        while True:
            await asyncio.sleep(0.25)
            now = self.clock()
            market_open = self._market_open(now)
            for sym, f in self.feeds.items():
                if market_open and f.last_wall and not f.stale and now - f.last_wall > stale_after:
                    f.stale = True
                    self.log(
                        "warning",
                        "data",
                        f"{sym}: no market data for {now - f.last_wall:.1f} s (stale)",
                    )
            eq = self.equity()
            reason = self.risk.update_equity(eq, now)
            if reason:
                self._alert("critical", "Risk limit breached", reason, key=f"breach:{reason[:20]}")
            self.executor.sample_equity(now)
            if now - self._metrics_at >= 1.0:
                self._metrics_at = now
                self.update_metrics(now)
            iv = self.config.metrics.rebalance_interval
            if iv > 0 and now - last_rebalance >= iv:
                last_rebalance = now
                ok, msg = self._rebalance()
                self.log("info" if ok else "warning", "metrics", msg)

    def _market_open(self, now: float) -> bool:
        """Whether silence on a feed means something: always for the simulated market and
        replays; for IB only while the exchange is open (a quiet feed at night is normal)."""
        if self.config.market.source != "ib":
            return True
        minute = int(now // 60)
        cached = getattr(self, "_open_cache", None)
        if cached is not None and cached[0] == minute:
            return cached[1]
        try:
            import exchange_calendars as xcals
            import pandas as pd

            cal = getattr(self, "_calendar", None) or xcals.get_calendar("XNYS")
            self._calendar = cal
            is_open = bool(cal.is_open_on_minute(pd.Timestamp(minute * 60, unit="s", tz="UTC")))
        except Exception:
            is_open = True  # unknown: better a false "stale" than a silent dead feed
        self._open_cache = (minute, is_open)
        return is_open

    # ------------------------------------------------------------------ metrics
    def update_metrics(self, now: float | None = None, *, store: bool | None = None) -> Any:
        """Real-time metrics per strategy and for the portfolio (engine thread).

        Stored in the journal database every 10 s (and on demand), and the day's post-trade
        report is written to the report directory when the trading day rolls.
        """
        from fbterm.metrics import store_metrics

        now = now or self.clock()
        for name, slot in self.executor.slots.items():
            if self.metrics.capital.get(name) != slot.capital:
                self.metrics.set_capital(name, slot.capital)
        marks = {k: m for k in self.oms.positions if (m := self.mark(k)) is not None}
        try:
            snap = self.metrics.calculate_real_time_metrics(
                self.oms.fills,
                marks,
                orders=list(self.oms.orders.values())[-5000:],
                now=now,
            )
        except Exception as e:  # metrics must never stop trading
            self.log("error", "metrics", f"real-time metrics failed: {type(e).__name__}: {e}")
            return None
        self.metrics_snapshot = snap
        if store or (store is None and now - self._metrics_stored >= 10.0):
            self._metrics_stored = now
            try:
                post = self.metrics.calculate_post_trade_metrics(self.oms.fills)
                store_metrics(self.journal.conn, snap, post.trades)
            except Exception as e:
                self.log("error", "metrics", f"storing metrics failed: {type(e).__name__}: {e}")
        day = snap.day
        if self._report_day is None:
            self._report_day = day
        elif day != self._report_day:
            self.write_daily_report(self._report_day)
            self._report_day = day
        return snap

    def write_daily_report(self, day: Any = None) -> list[Any]:
        """The day's closed trades (CSV) and summary (JSON) under the report directory."""
        try:
            post = self.metrics.calculate_post_trade_metrics(
                self.oms.fills, orders=list(self.oms.orders.values())[-20000:]
            )
            day = day or (self.metrics_snapshot.day if self.metrics_snapshot else None)
            if day is None:
                return []
            paths = self.metrics.write_daily_report(self.config.report_dir, day, post)
        except Exception as e:
            self.log("error", "metrics", f"daily report failed: {type(e).__name__}: {e}")
            return []
        self.log("info", "metrics", f"daily report for {day}: {', '.join(str(p) for p in paths)}")
        return paths

    # ------------------------------------------------------------------ logging & alerts
    def log(self, level: str, kind: str, message: str, **fields: Any) -> None:
        """A line for the console's log pane and the activity log (JSON lines)."""
        self._log_seq += 1
        self._log.append(LogLine(self._log_seq, self.clock(), level, kind, message))
        self._activity(kind, message, level=level, **fields)

    def _activity(self, kind: str, message: str, *, level: str = "info", **fields: Any) -> None:
        if self.diagnostics is not None:
            try:
                self.diagnostics.log_activity(kind, message, level=level, **fields)
            except Exception as e:  # the log must never stop trading; say so once
                if not self._activity_failed:
                    self._activity_failed = True
                    self._log.append(
                        LogLine(
                            self._log_seq,
                            self.clock(),
                            "error",
                            "engine",
                            f"activity log write failed: {e}",
                        )
                    )

    def _alert(self, severity: str, title: str, body: str, *, key: str) -> None:
        if self.diagnostics is not None:
            with contextlib.suppress(Exception):
                self.diagnostics.send_alert(severity, title, body, key=key)

    # ------------------------------------------------------------------ snapshots
    async def _publish_loop(self) -> None:
        """Snapshots on a steady clock, whatever the tick rate: a burst never floods the UI
        and a quiet market never starves it."""
        nxt = time.monotonic()
        while True:
            interval = min((e[1] for e in self._subscribers), default=0.1)
            nxt += interval
            delay = nxt - time.monotonic()
            if delay < -interval:
                nxt = time.monotonic()
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))
            if self._subscribers:
                self._publish()

    def _maybe_publish(self) -> None:
        # Also checked after every market-data step: when the feed keeps the engine busy, the
        # publish timer can wake late, and the screen must not slow down with the market.
        if self._subscribers:
            now = time.monotonic()
            if any(now - e[2] >= e[1] for e in self._subscribers):
                self._publish()

    def _publish(self, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        due = [e for e in self._subscribers if force or now - e[2] >= e[1]]
        snap = self.build_snapshot(running=running)
        self._snapshot = snap
        for e in due:
            # A forced (extra) publish leaves the cadence alone. A regular one keeps it: the
            # next slot is last slot + interval, not "interval after we got round to it",
            # or every late wake-up would stretch the period and 10 Hz would become 9.
            if now - e[2] >= e[1]:
                e[2] = e[2] + e[1] if now - e[2] < 2 * e[1] else now
            try:
                e[0](snap)
            except Exception as ex:  # a broken subscriber is dropped, not the engine
                with contextlib.suppress(ValueError):
                    self._subscribers.remove(e)
                self.log("error", "engine", f"snapshot subscriber failed and was removed: {ex}")

    def build_snapshot(self, running: bool = True) -> EngineSnapshot:
        now = self.clock()
        self._snap_seq += 1
        try:
            acct = self.broker.query_account_details()
        except Exception:
            acct = None
        positions = []
        for key, p in sorted(self.oms.positions.items()):
            if p.is_flat:
                continue
            last = self.mark(key)
            delta = None
            if isinstance(p.instrument, Option):
                q = self.option_marks.get(key)
                delta = q.delta if q else None
            holders = tuple(
                sorted(
                    sid
                    for sid, book in self.oms.by_strategy.items()
                    if key in book and not book[key].is_flat
                )
            )
            positions.append(
                PositionRow(
                    key,
                    p.quantity,
                    p.avg_cost,
                    last,
                    p.market_value(last) if last is not None else 0.0,
                    p.unrealized_pnl(last),
                    p.realized_pnl,
                    p.multiplier,
                    delta,
                    holders,
                )
            )
        strategies = []
        ms = self.metrics_snapshot
        for name, slot in self.executor.slots.items():
            pm = ms.strategies.get(name) if ms is not None else None
            realized, unrealized = self.executor.pnl(name)
            eq = slot.capital + realized + unrealized
            pos = self.executor.positions_of(name)
            pos_text = ", ".join(f"{k} {p.quantity:+g}" for k, p in sorted(pos.items())) or "flat"
            trades = pm.closed_trades if pm else 0
            day_pnl = eq - slot.day_start_equity if slot.day_start_equity is not None else 0.0
            dd = (1 - eq / slot.peak_equity) * 100 if slot.peak_equity > 0 else 0.0
            strategies.append(
                StrategyRow(
                    name,
                    slot.spec,
                    slot.state,
                    slot.capital,
                    slot.symbols,
                    pos_text,
                    day_pnl,
                    realized + unrealized,
                    trades,
                    slot.last_signal,
                    slot.error,
                    eq,
                    max(dd, 0.0),
                    fills=self._fills_by_strategy.get(name, 0),
                    sharpe=_finite(pm.rolling_sharpe) if pm else None,
                    win_rate_pct=_finite(pm.win_rate * 100) if pm else None,
                    params=tuple(slot.strategy.p.items()),
                )
            )
        gross = self.gross_exposure()
        eq = acct.equity if acct else self.risk.equity
        risk = RiskView(
            self.risk.state,
            self.risk.reason,
            eq,
            max(self.risk.peak, eq),
            (1 - eq / self.risk.peak) * 100 if self.risk.peak > 0 else 0.0,
            self.risk.daily_pnl,
            gross,
            self.risk.orders_per_second(),
            self.risk.gauges(gross),
        )
        feeds = tuple(
            FeedStatus(s, f.last_wall, now - f.last_wall if f.last_wall else math.inf, f.stale)
            for s, f in self.feeds.items()
        )
        lat = sorted(self.oms.ack_latencies[-1000:])
        p50 = lat[len(lat) // 2] * 1000 if lat else None
        p99 = lat[min(int(len(lat) * 0.99), len(lat) - 1)] * 1000 if lat else None
        if len(self.oms.ack_latencies) > 5000:
            del self.oms.ack_latencies[:-1000]
        live = self.config.broker.kind == "ib"
        read_only = self.connection is ConnectionState.READ_ONLY or (
            live and self.config.broker.ib.read_only
        )
        mode = "READ-ONLY" if read_only else ("LIVE" if live else "PAPER")
        return EngineSnapshot(
            seq=self._snap_seq,
            ts=now,
            mode=mode,
            broker=self.broker.name,
            account=acct.account if acct else "",
            connection=self.connection.value,
            connection_message=self.connection_message,
            account_details=acct,
            positions=tuple(positions),
            open_orders=tuple(self.oms.open.values()),
            strategies=tuple(strategies),
            risk=risk,
            feeds=feeds,
            log=tuple(self._log)[-200:],
            latency_ms_p50=p50,
            latency_ms_p99=p99,
            last_prices=dict(self.prices),
            results=tuple(self._results),
            ticks_processed=self.ticks_processed,
            fills_total=len(self.oms.fills),
            running=running,
        )


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _default_diagnostics(cfg: Config) -> Any:
    """The activity log and alert channels from config (None if they cannot be opened)."""
    try:
        from fbterm.ops import Diagnostics

        return Diagnostics.from_config(cfg)
    except Exception:
        return None
