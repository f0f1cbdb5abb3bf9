"""The engine: one thread, its own asyncio loop, and all the trading state.

Data flow (the seed's): market data -> bars -> StrategyExecutor -> StrategyLevelRisk /
PortfolioLevelRisk -> OrderManagement (journal first) -> broker -> fills -> positions ->
metrics -> snapshots and alerts.

Only this thread mutates orders, positions, P&L and the trading state. Everyone else talks to it
through :meth:`Engine.submit` (a thread-safe command queue that wakes the loop) and listens
through :meth:`Engine.subscribe` (immutable snapshots at a fixed rate). This package never
imports textual, so the engine runs headless and is testable alone.

:class:`Engine` assembles its collaborators and runs them; each job lives in its own module:
market data (:mod:`.market`), commands (:mod:`.commands`), order events and the risk hook
(:mod:`.events`), start-up (:mod:`.startup`), timers and metrics (:mod:`.housekeeping`),
snapshots (:mod:`.publisher`), strategies and hot updates (:mod:`.strategies`), the control
socket (:mod:`.control`), and the parts built from configuration (:mod:`.wiring`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fbterm.commands import Command, CommandResult
from fbterm.config import Config, StrategyConfig
from fbterm.engine import startup
from fbterm.engine.commands import CommandHandlers, Desk
from fbterm.engine.events import ActivityLog, OrderEvents, RiskGate, RiskReaction, VenueLink
from fbterm.engine.housekeeping import EngineMetrics, Housekeeping
from fbterm.engine.market import MarketFeed, MarketState, RiskInputs, TickSource
from fbterm.engine.publisher import Publisher, SnapshotBuilder
from fbterm.engine.strategies import StrategyHost
from fbterm.engine.wiring import (
    VenueContext,
    default_diagnostics,
    make_broker,
    make_source,
    simulated_market,
)
from fbterm.execution.brokers.base import Broker, BrokerPosition, SimulatedVenue
from fbterm.execution.costs import commission_from_config
from fbterm.execution.orders import OrderManagement, OrderQueue, UnknownOrder
from fbterm.journal import Journal
from fbterm.model import Bar, IllegalTransition, OrderError, Tick
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.snapshot import EngineSnapshot
from fbterm.strategies.base import StrategyInterface
from fbterm.strategies.executor import StrategyExecutor, StrategySlot

if TYPE_CHECKING:
    import datetime as dt
    from pathlib import Path

    from fbterm.control import ControlServer
    from fbterm.data.retrieval import DataRetrieval
    from fbterm.data.simulated import SimulatedMarket
    from fbterm.metrics.live import MetricsSnapshot
    from fbterm.ops.diagnostics import Diagnostics

T = TypeVar("T")


class Engine:
    """The trading engine. Construct, :meth:`start`, :meth:`submit` commands, :meth:`stop`.

    Anything not given is built from ``cfg``: the journal, the venue (``broker.kind``), the
    market data (``market.source``: the simulated market, or a source read through
    DataRetrieval) and the activity log and alert channels (``diagnostics``).
    """

    def __init__(
        self,
        cfg: Config,
        *,
        broker: Broker | None = None,
        source: TickSource | None = None,
        market: SimulatedMarket | None = None,
        journal: Journal | None = None,
        diagnostics: Diagnostics | None = None,
        clock: Callable[[], float] = time.time,
        warmup_bars: int | None = None,
        pace: bool = True,
    ):
        self.config = cfg
        self.clock = clock
        self.pace = pace
        self.diagnostics = diagnostics if diagnostics is not None else default_diagnostics(cfg)
        self.activity = ActivityLog(self.diagnostics, clock)
        self.symbols = list(cfg.market.symbols)
        if market is None and source is None and cfg.market.source == "simulated":
            market = simulated_market(cfg, self.symbols)
        self.market = market
        self.journal = journal or Journal(cfg.journal_path, synchronous=cfg.journal.synchronous)
        self.market_state = MarketState(cfg, self.symbols, market, self.activity)
        pricer = self.market_state.option_quote if market is not None else None
        self.broker: Broker = broker or make_broker(VenueContext(cfg, self.journal, clock, pricer))
        # Asked once: a venue simulated in this process fills on our market data, shares our
        # journal commits and is rebuilt from the journal at a restart; a remote one does not.
        self.venue: SimulatedVenue | None = (
            self.broker if isinstance(self.broker, SimulatedVenue) else None
        )
        self.retrieval: DataRetrieval | None = None
        if source is None and cfg.market.source != "simulated":
            source, self.retrieval = make_source(cfg, self.broker)
        self.source = source

        self.link = VenueLink()
        self._stop_requested = False
        self.oms = OrderManagement(self.broker, self.journal, clock=clock)
        self.events = OrderEvents(
            self.activity, self.link, self.oms.fills, stopping=lambda: self._stop_requested
        )
        self.oms.subscribe(self.events.on_event)
        self.queue = OrderQueue(maxsize=10_000)
        paper = cfg.broker.paper
        self.executor = StrategyExecutor(
            self.oms,
            commission_fraction=paper.commission_fraction if paper.commission == "percent" else 0.0,
            option_chain=self.market_state.option_chain,
            marks=self.market_state.mark,
            log=self.activity.log,
            clock=clock,
            queue=self.queue,
            calendar=cfg.market.calendar,
            fee=None if paper.commission == "percent" else commission_from_config(paper),
        )
        self.executor.on_error = self.events.on_strategy_error
        self.risk = PortfolioLevelRisk(
            cfg.risk,
            RiskInputs(self.market_state, self.oms, clock),
            clock=clock,
            on_state_change=RiskReaction(
                self.executor,
                self.oms,
                self.activity,
                cancel_orders_on_halt=cfg.risk.cancel_orders_on_halt,
            ),
            calendar=cfg.market.calendar,
        )
        # The gate reads the risk manager, which reads the order manager's positions: it is
        # plugged into the order manager once both exist.
        self.gate = RiskGate(self.risk)
        self.oms.risk_check = self.gate.check

        self.strategies = StrategyHost(cfg, self.executor, self.market_state.history)
        self.metrics = EngineMetrics(
            cfg, self.executor, self.oms, self.market_state, self.journal, self.activity, clock
        )
        self.housekeeping = Housekeeping(
            cfg,
            self.market_state,
            self.broker,
            self.risk,
            self.executor,
            self.metrics,
            self.activity,
            clock,
        )
        self.publisher = Publisher(self.build_snapshot, self.activity)
        self.feed = MarketFeed(
            cfg,
            self.symbols,
            self.market_state,
            self.executor,
            self.oms,
            self.journal,
            self.venue,
            self.activity,
            source=source,
            clock=clock,
            pace=pace,
            after_step=self.publisher.maybe_publish,
        )
        self._results: deque[CommandResult] = deque(maxlen=50)
        self.snapshots = SnapshotBuilder(
            cfg,
            self.broker,
            self.oms,
            self.risk,
            self.executor,
            self.market_state,
            self.feed,
            self.metrics,
            self.events,
            self.link,
            self.activity,
            self._results,
            clock,
        )
        self.handlers = CommandHandlers(
            Desk(
                config=cfg,
                symbols=self.symbols,
                risk=self.risk,
                gate=self.gate,
                oms=self.oms,
                executor=self.executor,
                market=self.market_state,
                strategies=self.strategies,
                activity=self.activity,
                diagnostics=self.diagnostics,
                clock=clock,
                stop=self._request_stop,
            )
        )
        self.control: ControlServer | None = None
        self.broker_positions: list[BrokerPosition] = []
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._startup_error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self.strategies.load(self.symbols)
        self.warmup_bars: int = (
            warmup_bars
            if warmup_bars is not None
            else startup.default_warmup_bars(self.executor, market)
        )

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
            from fbterm.engine.control import serve_control

            self.control = serve_control(
                self.config.control_socket_path,
                diagnostics=self.diagnostics,
                strategies=self.strategies,
                call=self.call,
                snapshot=self.build_snapshot_threadsafe,
                submit=self.submit,
                activity=self.activity,
            )
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

    def submit(self, cmd: Command) -> int:
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
        return self.publisher.subscribe(callback, hz)

    def latest(self) -> EngineSnapshot | None:
        return self.publisher.snapshot

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the engine thread and return its result (for tests, tools, shutdown).

        Not for the UI's hot path: it blocks the caller until the engine has run ``fn``.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or not self.running:
            return fn()

        async def _run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(_run(), loop).result(timeout)

    def stop_feed(self) -> None:
        """Stop taking market data (thread-safe); orders, commands and the venue stay up.

        A final summary taken after this describes a state that no new tick can change.
        """

        def _cancel() -> None:
            if self._feed_task is not None:
                self._feed_task.cancel()

        self.call(_cancel)

    def build_snapshot_threadsafe(self) -> EngineSnapshot:
        def both() -> EngineSnapshot:
            # Taken together on the engine thread, so the venue's view (IB: every position,
            # not only ours) and ours describe the same moment.
            self.broker_positions = self._safe_broker_positions()
            return self.build_snapshot()

        return self.call(both)

    def _safe_broker_positions(self) -> list[BrokerPosition]:
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
            if self.diagnostics is not None:
                with contextlib.suppress(Exception):
                    self.diagnostics.close(timeout=2.0)
            self._stopped.set()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        if self._stop_requested:
            return
        await self.broker.start()
        self.link.state = self.broker.connection_state
        self.log("info", "engine", f"connected to {self.broker.name} ({self.link.state.value})")
        self.reconcile()
        self.warm_up()
        await self.warm_up_from_history()
        self.publisher.publish(force=True)
        self._ready.set()
        self._drain_commands()
        self._feed_task = asyncio.create_task(self.feed.run(), name="feed")
        tasks = [
            self._feed_task,
            asyncio.create_task(self.housekeeping.run(), name="housekeeping"),
            asyncio.create_task(self.publisher.run(), name="publish"),
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
            self.publisher.publish(force=True, running=False)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.broker.stop(), 5)

    def _wake_stop(self) -> None:
        if self._stop_event is not None:
            self._stop_event.set()

    def _request_stop(self) -> None:
        """The Stop command: end the main loop (engine thread)."""
        if self._stop_event is None:
            raise RuntimeError("the engine is not running")
        self._stop_event.set()

    def _close_journal(self) -> None:
        with contextlib.suppress(Exception):
            self.journal.close()

    def _drain_commands(self) -> None:
        """Run every queued command, in order, each answered by a result and a log line."""
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                ok, msg = self.handlers.handle(cmd)
            except (OrderError, IllegalTransition, UnknownOrder, KeyError, ValueError) as e:
                # A plain KeyError's str() is its repr; UnknownOrder's is already a sentence.
                ok, msg = False, str(e.args[0] if type(e) is KeyError and e.args else e)
            except Exception as e:  # a command must never kill the engine
                ok, msg = False, f"{type(e).__name__}: {e}"
            self._results.append(CommandResult(cmd.command_id, ok, msg, self.clock()))
            self.log(
                "info" if ok else "warning",
                "command",
                ("OK " if ok else "FAILED ") + msg,
                command=type(cmd).__name__,
                ok=ok,
                source=cmd.source,
                command_id=cmd.command_id,
            )
            self.publisher.publish(force=True)

    # ------------------------------------------------------------------ engine-thread API
    def log(self, level: str, kind: str, message: str, **fields: Any) -> None:
        """A line for the console's log pane and the activity log (JSON lines)."""
        self.activity.log(level, kind, message, **fields)

    def reconcile(self) -> list[str]:
        """Compare the journal with the venue after a (re)start; report every difference."""
        return startup.reconcile(
            self.broker,
            self.venue,
            self.oms,
            self.activity,
            self.clock,
            self.config.market.calendar,
        )

    def warm_up(self) -> None:
        """Give strategies history so they trade from the first live bar (simulated market)."""
        startup.warm_up(self.market_state, self.executor, self.symbols, self.warmup_bars)

    async def warm_up_from_history(self) -> int:
        """Live data: feed strategies recent history (cached through DataRetrieval)."""
        return await startup.warm_up_from_history(
            self.retrieval,
            self.market_state,
            self.executor,
            self.config,
            self.symbols,
            self.activity,
            self.clock,
        )

    def on_ticks(self, ticks: Sequence[Tick]) -> None:
        """Process market updates (engine thread). Public so benchmarks can drive it directly."""
        self.feed.on_ticks(ticks)

    def on_bars(self, bars: Sequence[Bar]) -> None:
        """Feed closed bars directly (CSV replay, IB 5-second bars)."""
        self.feed.on_bars(bars)

    @property
    def ticks_processed(self) -> int:
        return self.feed.ticks_processed

    @property
    def tick_latencies(self) -> deque[float]:
        """Tick arrival -> order created, for ticks that created orders (benchmarks)."""
        return self.feed.tick_latencies

    @tick_latencies.setter
    def tick_latencies(self, value: deque[float]) -> None:
        self.feed.tick_latencies = value

    @property
    def history(self) -> dict[str, deque[Bar]]:
        """Recent closed bars per symbol (hot updates validate and warm on them)."""
        return self.market_state.history

    def oms_count(self) -> int:
        return len(self.oms.orders)

    def mark(self, key: str) -> float | None:
        return self.market_state.mark(key)

    def gross_exposure(self) -> float:
        return self.market_state.gross_exposure(self.oms.positions)

    def equity(self) -> float:
        return self.housekeeping.equity()

    def update_metrics(
        self, now: float | None = None, *, store: bool | None = None
    ) -> MetricsSnapshot | None:
        """Real-time metrics per strategy and for the portfolio (engine thread)."""
        return self.metrics.update(now, store=store)

    def write_daily_report(self, day: dt.date | None = None) -> list[Path]:
        """The day's closed trades (CSV) and summary (JSON) under the report directory."""
        return self.metrics.write_daily_report(day)

    def build_snapshot(self, running: bool = True) -> EngineSnapshot:
        return self.snapshots.build(running)

    # -- the UpdatableEngine protocol (fbterm.ops.UpdatesManagement), via StrategyHost ------
    def strategy_names(self) -> list[str]:
        return self.strategies.strategy_names()

    def strategy_config(self, name: str) -> StrategyConfig:
        return self.strategies.strategy_config(name)

    def strategy(self, name: str) -> StrategyInterface:
        return self.strategies.strategy(name)

    def build_strategy(self, config: StrategyConfig) -> StrategyInterface:
        return self.strategies.build_strategy(config)

    def validate_strategy(self, name: str, strategy: StrategyInterface) -> None:
        self.strategies.validate_strategy(name, strategy)

    def pause_strategy(self, name: str) -> None:
        self.strategies.pause_strategy(name)

    def resume_strategy(self, name: str) -> None:
        self.strategies.resume_strategy(name)

    def replace_strategy(
        self, name: str, new_strategy: StrategyInterface, config: StrategyConfig
    ) -> StrategyInterface:
        return self.strategies.replace_strategy(name, new_strategy, config)
