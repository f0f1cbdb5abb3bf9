"""What the engine publishes: immutable snapshots of its state.

The engine thread owns all trading state. Subscribers (the console, the headless summary, the
control socket) never touch that state: they receive an :class:`EngineSnapshot` at a steady
rate. What they send back lives in :mod:`fbterm.commands`; each command's outcome returns as a
:class:`~fbterm.commands.CommandResult` inside the next snapshots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fbterm.commands import CommandResult
from fbterm.model import AccountDetails, Order, StrategyState, TradingState
from fbterm.model.greeks import GreekRow, Greeks


@dataclass(frozen=True, slots=True)
class PositionRow:
    symbol: str
    quantity: float
    avg_cost: float
    last: float | None
    market_value: float
    unrealized_pnl: float
    realized_pnl: float
    multiplier: int = 1
    delta: float | None = None  # options: per-contract delta of the option
    strategies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StrategyRow:
    name: str
    cls: str
    state: StrategyState
    allocation: float
    symbols: tuple[str, ...]
    position: str  # e.g. "AAPL +300, MSFT -120"
    pnl_today: float
    pnl_total: float
    trades: int  # closed round trips
    last_signal: str
    error: str = ""
    equity: float = 0.0
    drawdown_pct: float = 0.0
    sharpe: float | None = None
    win_rate_pct: float | None = None
    params: tuple[tuple[str, object], ...] = ()
    fills: int = 0


@dataclass(frozen=True, slots=True)
class Gauge:
    """A value against its limit; ``level`` is ok / warn / breach."""

    name: str
    value: float
    limit: float
    level: str
    text: str

    @property
    def fraction(self) -> float:
        return 0.0 if self.limit <= 0 else max(self.value / self.limit, 0.0)


@dataclass(frozen=True, slots=True)
class RiskView:
    state: TradingState
    halt_reason: str
    equity: float
    peak_equity: float
    drawdown_pct: float
    daily_pnl: float
    gross_exposure: float
    orders_per_second: float
    gauges: tuple[Gauge, ...]
    greeks: tuple[GreekRow, ...] = ()  # per underlying
    portfolio_greeks: Greeks = field(default_factory=Greeks)


@dataclass(frozen=True, slots=True)
class FeedStatus:
    symbol: str
    last_ts: float  # wall clock of the last update
    age: float  # seconds since
    stale: bool


@dataclass(frozen=True, slots=True)
class LogLine:
    seq: int
    ts: float
    level: str  # debug / info / warning / error
    kind: str  # engine / order / fill / risk / alert / command / broker / strategy
    message: str


@dataclass(frozen=True, slots=True)
class ConnectionChange:
    """One change of the venue link, as the operator's history shows it."""

    ts: float
    state: str
    message: str


@dataclass(frozen=True, slots=True)
class ReconcileView:
    """The engine's book against the venue's own answers (remote venues only).

    ``differences`` are the most recent ones found (any run), each with its time and what was
    done about it; ``order_notes`` say who placed an order fbterm did not (and whether it can
    be cancelled from here).
    """

    runs: int
    last_ts: float
    last_trigger: str
    clean: bool
    error: str
    differences: tuple[str, ...]
    differences_ts: float
    venue_open_orders: int
    order_notes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class WarmupView:
    """Strategies warming on history in the background: ``done`` of ``total`` symbols."""

    done: int
    total: int
    text: str

    @property
    def complete(self) -> bool:
        return self.done >= self.total


@dataclass(frozen=True, slots=True)
class AlertLine:
    ts: float
    severity: str
    title: str
    body: str


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    seq: int
    ts: float
    mode: str  # PAPER / LIVE / READ-ONLY
    broker: str  # paper / ib
    account: str
    connection: str  # connected / read-only / re-syncing / lost / reconnecting / disconnected
    connection_message: str
    account_details: AccountDetails | None
    positions: tuple[PositionRow, ...]
    open_orders: tuple[Order, ...]
    strategies: tuple[StrategyRow, ...]
    risk: RiskView
    feeds: tuple[FeedStatus, ...]
    log: tuple[LogLine, ...]  # the most recent lines, oldest first
    latency_ms_p50: float | None  # submit -> acknowledge
    latency_ms_p99: float | None
    last_prices: dict[str, float] = field(default_factory=dict)
    results: tuple[CommandResult, ...] = ()  # recent command outcomes
    ticks_processed: int = 0
    fills_total: int = 0
    running: bool = True
    # How the previous session ended and what this one recovered from the journal.
    session_note: str = ""
    # Set when the engine stopped because a journal write failed: the line it stopped on.
    fatal: str = ""
    connection_since: float = 0.0
    connection_history: tuple[ConnectionChange, ...] = ()
    reconciliation: ReconcileView | None = None
    warmup: WarmupView | None = None
    alerts: tuple[AlertLine, ...] = ()  # the most recent alerts raised, oldest first
    market_data_delayed: bool = False  # quotes are IB's delayed data (header: DELAYED)
    # Best bid and ask per instrument key, where the feed quotes them (the blotter shows them
    # beside the last price); absent for bar-only feeds.
    quotes: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def halted(self) -> bool:
        return self.risk.state is TradingState.HALTED

    @property
    def stale_feeds(self) -> tuple[str, ...]:
        return tuple(f.symbol for f in self.feeds if f.stale)
