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
(:mod:`.events`), start-up (:mod:`.startup`), warm-up on history (:mod:`.warmup`), the venue
link (:mod:`.venue`), reconciliation with a remote venue (:mod:`.reconcile`), timers and
metrics (:mod:`.housekeeping`),
snapshots (:mod:`.publisher`), strategies and hot updates (:mod:`.strategies`), the control
socket (:mod:`.control`), and the parts built from configuration (:mod:`.wiring`). Its thread,
loop and the session they run are :mod:`.lifecycle`'s; this module assembles the parts and is
the engine's API: :meth:`Engine.submit` and :meth:`Engine.subscribe` from any thread, the rest
on the engine thread.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from fbterm.commands import Command, CommandResults
from fbterm.config import Config
from fbterm.engine import startup
from fbterm.engine.commands import CommandHandlers, CommandRunner, Desk
from fbterm.engine.events import ActivityLog, OrderEvents, RiskGate, RiskReaction, VenueLink
from fbterm.engine.faults import JournalFault
from fbterm.engine.greeks import GreekBook
from fbterm.engine.housekeeping import EngineMetrics, Housekeeping
from fbterm.engine.lifecycle import EngineThread, run_session
from fbterm.engine.market import MarketFeed, MarketState, RiskInputs, TickSource
from fbterm.engine.operator_state import OperatorStateKeeper, Recovery
from fbterm.engine.publisher import Publisher, SessionNotes, SnapshotBuilder
from fbterm.engine.reconcile import Reconciler
from fbterm.engine.strategies import HostsStrategies, StrategyHost
from fbterm.engine.venue import ConnectionWatch
from fbterm.engine.warmup import Warmup
from fbterm.engine.wiring import (
    SourceHooks,
    VenueContext,
    default_diagnostics,
    make_broker,
    make_source,
    read_only_reason,
    simulated_market,
)
from fbterm.execution.brokers.base import Broker, BrokerPosition, RemoteVenue, SimulatedVenue
from fbterm.execution.costs import commission_from_config
from fbterm.execution.orders import OrderManagement, OrderQueue
from fbterm.journal import Journal, SessionRecord
from fbterm.journal_lock import JournalLock
from fbterm.model import Bar, Tick, TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.snapshot import EngineSnapshot
from fbterm.strategies.base import StrategyInterface
from fbterm.strategies.executor import StrategyExecutor, StrategySlot

if TYPE_CHECKING:
    import asyncio
    import datetime as dt
    from pathlib import Path

    from fbterm.control import ControlServer
    from fbterm.data.retrieval import DataRetrieval
    from fbterm.data.simulated import SimulatedMarket
    from fbterm.metrics.live import MetricsSnapshot
    from fbterm.ops.diagnostics import Diagnostics

T = TypeVar("T")


class Engine(HostsStrategies):
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
        self.activity.gate = self.journal.after_commit
        self.lock = JournalLock(self.journal.path)
        self.market_state = MarketState(cfg, self.symbols, market, self.activity)
        pricer = self.market_state.option_quote if market is not None else None
        self.broker: Broker = broker or make_broker(VenueContext(cfg, self.journal, clock, pricer))
        # Asked once: a venue simulated in this process fills on our market data, shares our
        # journal commits and is rebuilt from the journal at a restart; a remote one does not.
        self.venue: SimulatedVenue | None = (
            self.broker if isinstance(self.broker, SimulatedVenue) else None
        )
        # A venue outside this process (IB) is the truth the engine reconciles against.
        self.remote: RemoteVenue | None = (
            self.broker if isinstance(self.broker, RemoteVenue) else None
        )
        self.retrieval: DataRetrieval | None = None
        if source is None and cfg.market.source != "simulated":
            source, self.retrieval = make_source(
                cfg, self.broker, SourceHooks(on_pacing_wait=lambda *a: self.warmup.note_wait(*a))
            )
        self.source = source
        # Option chains come with IB market data (the covered call's option leg live).
        self.market_state.chains = getattr(source, "option_chains", None)

        self.link = VenueLink()
        self.thread = EngineThread()
        # Set by stop() and by the session's end: from then on a disconnect is ours, not news.
        self.stop_requested = False
        self.oms = OrderManagement(
            self.broker, self.journal, clock=clock, read_only=read_only_reason(cfg)
        )
        self.events = OrderEvents(self.activity, self.oms.fill_counts)
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
            on_state_change=self._trading_state_changed,
            calendar=cfg.market.calendar,
        )
        self.reaction = RiskReaction(
            self.executor,
            self.oms,
            self.activity,
            cancel_orders_on_halt=cfg.risk.cancel_orders_on_halt,
        )
        self.keeper = OperatorStateKeeper(self.journal, self.risk, self.executor, self.oms, clock)
        self.recovery: Recovery | None = None
        self.fault = JournalFault(
            self.journal,
            self.broker,
            self.oms,
            self.risk,
            self.executor,
            self.keeper,
            self.activity,
            schedule=self.thread.schedule,
            stop=self.thread.wake_stop,
        )
        self.journal.on_failure = self.fault.on_failure
        self.greeks = GreekBook(
            self.market_state, self.oms, clock, cfg.market.simulated.risk_free_rate
        )
        self.risk.greeks = self.greeks
        # The gate reads the risk manager, which reads the order manager's positions: it is
        # plugged into the order manager once both exist.
        self.gate = RiskGate(self.risk)
        self.oms.risk_check = self.gate.check
        self.reconciler: Reconciler | None = None
        if self.remote is not None:
            self.reconciler = Reconciler(
                self.remote,
                self.broker,
                self.oms,
                self.activity,
                clock,
                interval=cfg.broker.ib.reconcile_interval,
            )
        self.watch = ConnectionWatch(
            cfg,
            self.link,
            self.risk,
            self.activity,
            clock,
            stopping=lambda: self.stop_requested,
            resync=self.reconciler.request if self.reconciler is not None else None,
        )
        self.oms.subscribe(self.watch.on_oms_event)
        self.warmup = Warmup(
            cfg, self.symbols, self.market_state, self.executor, self.activity, clock
        )

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
            journal=self.journal,
            persist=self.keeper.sync,
            feed_ended=lambda: self.feed.ended,
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
            admit=self.warmup.admit,
        )
        self._results = CommandResults(keep=50)
        self.notes = SessionNotes()
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
            notes=self.notes,
            reconciler=self.reconciler,
            warmup=self.warmup,
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
                stop=self.thread.request_stop,
            )
        )
        self.control: ControlServer | None = None
        self.broker_positions: list[BrokerPosition] = []
        self.commands = CommandRunner(
            self.handlers,
            self.journal,
            self._results,
            in_process_venue=self.venue is not None,
            persist=self.keeper.sync,
            log=self.activity.log,
            published=lambda: self.publisher.publish(force=True),
            clock=clock,
        )
        self.feed_task: asyncio.Task[None] | None = None
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
        if self.thread.started:
            raise RuntimeError("engine already started")
        # One engine per journal, for the engine's whole life (JournalLocked names the holder).
        self.lock.acquire()
        if control:
            from fbterm.engine.control import serve_control

            self.control = serve_control(
                self.config.control_socket_path,
                diagnostics=self.diagnostics,
                strategies=self.strategies,
                call=self.call,
                snapshot=self.build_snapshot_threadsafe,
                submit=self.submit,
                results=self._results,
                activity=self.activity,
                oms=self.oms,
                journal_path=self.journal.path,
            )
        self.thread.start(
            lambda: run_session(self),
            on_error=lambda e: self.log(
                "error", "engine", f"engine stopped on error: {type(e).__name__}: {e}"
            ),
            on_exit=self._thread_ended,
            timeout=timeout,
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.control is not None:
            with contextlib.suppress(Exception):
                self.control.stop()
            self.control = None
        if not self.thread.has_loop:
            self._close_journal()
            self.lock.release()
            return
        self.stop_requested = True
        self.thread.stop(timeout)

    def submit(self, cmd: Command) -> int:
        """Queue a command for the engine thread (thread-safe, never blocks).

        A full queue refuses the command: its result (not ok, "engine busy") is in the next
        snapshot, as every other command's is.
        """
        if self.commands.put(cmd):
            self.thread.schedule(self._drain_commands)
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
        return self.thread.call(fn, timeout)

    def stop_feed(self) -> None:
        """Stop taking market data (thread-safe); orders, commands and the venue stay up.

        A final summary taken after this describes a state that no new tick can change.
        """

        def _cancel() -> None:
            if self.feed_task is not None:
                self.feed_task.cancel()

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
    def fatal(self) -> str | None:
        """The line the engine stopped on when a journal write failed (None otherwise)."""
        return self.fault.message or self.fault.why

    @property
    def running(self) -> bool:
        return self.thread.running

    def wait_stopped(self, timeout: float | None = None) -> bool:
        return self.thread.wait_stopped(timeout)

    # ------------------------------------------------------------------ session parts
    def _thread_ended(self) -> None:
        """The engine thread's loop has closed: let go of the journal and the alert channels."""
        self._close_journal()
        self.lock.release()
        if self.diagnostics is not None:
            with contextlib.suppress(Exception):
                self.diagnostics.close(timeout=2.0)

    def restore_operator_state(self, previous: SessionRecord | None) -> Recovery:
        """Halt, baselines, paused strategies and allocations as the journal has them."""
        rec = self.recovery = self.keeper.restore(previous)
        # The restored baselines judge the equity we start with, before anything trades.
        self.risk.update_equity(self.housekeeping.equity(), self.clock())
        self.keeper.sync()
        self.notes.note = rec.note
        if rec.note:
            self.log("info" if rec.uneventful else "warning", "engine", rec.note)
        return rec

    def _close_journal(self) -> None:
        with contextlib.suppress(Exception):
            self.journal.close()

    def _drain_commands(self) -> None:
        """Run every queued command (engine thread)."""
        self.commands.drain()

    def _trading_state_changed(self, state: TradingState, reason: str) -> None:
        """The risk manager changed state: journal it, then react (and say so)."""
        self.keeper.sync()
        self.reaction(state, reason)

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
        return self.oms.orders_total

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
