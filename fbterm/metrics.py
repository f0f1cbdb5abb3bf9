"""Performance metrics (real-time and post-trade) and half-Kelly capital allocation.

The maths lives in pure functions (``kelly_continuous``, ``half_kelly_allocations``,
``match_round_trips``, ``drawdown_series``, ...) so it can be tested by hand-computed cases and
reused by the backtester. :class:`MetricsCalculation` adds the little state a live view needs
(equity history for drawdown and rolling Sharpe, the day's opening marks for "P&L today");
:class:`Optimization` turns Kelly fractions into capital moves through the strategy executor.

Conventions: money amounts are in account currency and include the instrument multiplier;
drawdown is a non-negative fraction below the running peak; slippage is positive when it cost
us (bought above / sold below the price the strategy saw); timestamps are epoch seconds UTC and
"a day" is a calendar day in the market's time zone.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import itertools
import json
import logging
import math
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from fbterm.model import Fill, Order, Position

log = logging.getLogger(__name__)

# 252 sessions of 6.5 hours: annualising by trading time, not calendar time, keeps an
# intraday equity curve's Sharpe comparable with a daily backtest's.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
_EPS = 1e-9

PricePath = Sequence[tuple[float, float]]  # (ts, price), sorted by ts

# ===================================================================== pure maths: Kelly


def _finite(values: Iterable[float]) -> np.ndarray:
    a = np.asarray(list(values), dtype=float)
    return a[np.isfinite(a)]


def kelly_continuous(returns: Sequence[float], risk_free: float = 0.0) -> float:
    """Continuous Kelly fraction ``(mean - rf) / variance`` of per-period returns.

    Sample variance (ddof=1) because histories are short and the population formula would
    overstate the edge. With zero variance the answer is +/-inf (or 0 for a zero mean); callers
    clamp, and an infinite fraction honestly says "the data shows no risk".
    """
    r = _finite(returns)
    if r.size < 2:
        raise ValueError(f"need at least 2 returns for a variance, got {r.size}")
    mean = float(r.mean()) - risk_free
    var = float(r.var(ddof=1))
    if var <= 0.0:
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / var


def kelly_discrete(win_rate: float, payoff: float) -> float:
    """Discrete Kelly ``W - (1 - W) / R`` for win rate W and payoff ratio R (avg win / avg loss)."""
    if not 0.0 <= win_rate <= 1.0 or math.isnan(win_rate):
        raise ValueError(f"win_rate must be in [0, 1], got {win_rate!r}")
    if not payoff > 0:
        raise ValueError(f"payoff must be > 0, got {payoff!r}")
    return win_rate - (1.0 - win_rate) / payoff


def win_rate_and_payoff(trade_pnls: Sequence[float]) -> tuple[float, float]:
    """(W, R) from per-trade P&L. Scratch trades (exactly 0) count as neither win nor loss.

    With no losing trade R is infinite, and ``kelly_discrete`` then returns W: the data shows
    no downside, so the fraction is bounded only by the cap.
    """
    p = _finite(trade_pnls)
    wins, losses = p[p > 0], p[p < 0]
    decided = wins.size + losses.size
    if decided == 0:
        return 0.0, 1.0
    w = wins.size / decided
    if losses.size == 0:
        return w, math.inf
    if wins.size == 0:
        return 0.0, 1.0
    return w, float(wins.mean()) / float(-losses.mean())


def half_kelly_allocations(
    kelly_fractions: Mapping[str, float], cap: float, budget: float = 1.0
) -> dict[str, float]:
    """Halve each Kelly fraction, clamp it to [0, cap] and scale all down if the sum exceeds budget.

    Negative Kelly (no edge) becomes 0 rather than a short allocation: a strategy cannot be
    given negative capital. NaN is treated as "no information" and also becomes 0.
    """
    if not cap > 0:
        raise ValueError(f"cap must be > 0, got {cap!r}")
    budget = max(0.0, budget)
    out: dict[str, float] = {}
    for name, k in kelly_fractions.items():
        half = 0.0 if k is None or math.isnan(k) else k / 2.0
        out[name] = min(max(half, 0.0), cap)
    total = sum(out.values())
    if total > budget:
        # Proportional scaling keeps the strategies' relative sizes (their relative edges).
        scale = budget / total
        out = {n: v * scale for n, v in out.items()}
    return out


# ================================================================ pure maths: equity curves


def simple_returns(equity: Sequence[float]) -> np.ndarray:
    e = np.asarray(equity, dtype=float)
    if e.size < 2:
        return np.empty(0)
    prev = e[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev != 0, e[1:] / prev - 1.0, np.nan)
    return r


def sharpe_ratio(
    returns: Sequence[float], periods_per_year: float = 252.0, risk_free: float = 0.0
) -> float:
    """Annualised Sharpe of per-period returns; NaN when undefined (fewer than 2, or flat)."""
    r = _finite(returns)
    if r.size < 2:
        return math.nan
    sd = float(r.std(ddof=1))
    if sd <= 0:
        return math.nan
    return (float(r.mean()) - risk_free) / sd * math.sqrt(periods_per_year)


def rolling_sharpe(
    returns: Sequence[float], window: int, periods_per_year: float = 252.0
) -> np.ndarray:
    """Sharpe over each trailing window; the first ``window - 1`` entries are NaN."""
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    r = np.asarray(returns, dtype=float)
    out = np.full(r.size, np.nan)
    for i in range(window - 1, r.size):
        out[i] = sharpe_ratio(r[i - window + 1 : i + 1], periods_per_year)
    return out


def drawdown_series(equity: Sequence[float]) -> np.ndarray:
    """Fraction below the running peak at each point (0 at a new high)."""
    e = np.asarray(equity, dtype=float)
    if e.size == 0:
        return np.empty(0)
    peak = np.maximum.accumulate(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - e / peak, 0.0)
    return np.clip(dd, 0.0, None)


def max_drawdown(equity: Sequence[float]) -> float:
    dd = drawdown_series(equity)
    return float(dd.max()) if dd.size else 0.0


def periods_per_year_from_ts(ts: Sequence[float]) -> float:
    """Annualisation factor for an irregularly sampled series, from its median sampling interval."""
    t = np.asarray(ts, dtype=float)
    if t.size < 2:
        return 252.0
    dts = np.diff(t)
    dts = dts[dts > 0]
    if dts.size == 0:
        return 252.0
    return TRADING_SECONDS_PER_YEAR / float(np.median(dts))


def excursions(entry_price: float, direction: int, path: Iterable[float]) -> tuple[float, float]:
    """(MAE, MFE) per unit for a position entered at ``entry_price``: MAE <= 0 <= MFE."""
    mae = mfe = 0.0
    for p in path:
        move = (p - entry_price) * direction
        mae = min(mae, move)
        mfe = max(mfe, move)
    return mae, mfe


def path_between(path: PricePath | None, t0: float, t1: float) -> list[float]:
    if not path:
        return []
    return [p for t, p in path if t0 <= t <= t1]


def price_path_from_bars(bars: Any) -> list[tuple[float, float]]:
    """A price path from a bar DataFrame (UTC DatetimeIndex; open/high/low/close).

    Each bar contributes its low and high, so excursions see the intrabar extremes. Both are
    stamped with the bar's open time, which can credit an excursion that happened in the bar
    before the entry fill; that is the usual, accepted bias of bar-based MAE/MFE.
    """
    out: list[tuple[float, float]] = []
    for ts, low, high in zip(bars.index, bars["low"], bars["high"], strict=True):
        t = ts.timestamp()
        out.append((t, float(low)))
        out.append((t, float(high)))
    return out


# ========================================================== pure maths: round-trip trades


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One matched (entry lot, exit fill) pair: FIFO per strategy and instrument."""

    trade_id: str
    strategy_id: str
    instrument: str
    direction: int  # +1 long, -1 short
    quantity: float
    entry_ts: float
    exit_ts: float
    entry_price: float
    exit_price: float
    multiplier: int
    commissions: float
    gross_pnl: float
    pnl: float  # net of commissions
    return_pct: float  # pnl / entry notional
    holding_seconds: float
    mae: float  # money, <= 0
    mfe: float  # money, >= 0
    slippage: float  # money, > 0 is a cost
    entry_fill_id: str
    exit_fill_id: str

    @property
    def is_win(self) -> bool:
        return self.pnl > 0


@dataclass
class _Lot:
    fill: Fill
    remaining: float
    commission_left: float
    slippage_left: float


def fill_slippage(fill: Fill, signal_price: float | None) -> float:
    """Money lost against the price the strategy saw (negative: price improvement)."""
    if signal_price is None or not math.isfinite(signal_price) or signal_price <= 0:
        return 0.0
    return (fill.price - signal_price) * fill.side.sign * fill.quantity * fill.instrument.multiplier


class FifoMatcher:
    """Incremental FIFO matching: feed fills in time order, collect closed trades as they close."""

    def __init__(self, price_paths: Mapping[str, PricePath] | None = None) -> None:
        self.price_paths = price_paths or {}
        self.books: dict[tuple[str, str], deque[_Lot]] = {}
        self.trades: list[ClosedTrade] = []

    def add(self, f: Fill, signal_price: float | None = None) -> list[ClosedTrade]:
        if f.quantity <= 0:
            return []
        book = self.books.setdefault((f.strategy_id, f.instrument.key), deque())
        slip = fill_slippage(f, signal_price)
        qty_left = f.quantity
        sign = f.side.sign
        closed: list[ClosedTrade] = []
        while qty_left > _EPS and book and book[0].fill.side.sign != sign:
            lot = book[0]
            q = min(lot.remaining, qty_left)
            share_entry = q / lot.remaining
            share_exit = q / f.quantity
            entry_comm = lot.commission_left * share_entry
            entry_slip = lot.slippage_left * share_entry
            closed.append(
                _closed_trade(
                    lot.fill,
                    f,
                    q,
                    entry_comm + f.commission * share_exit,
                    entry_slip + slip * share_exit,
                    self.price_paths.get(f.instrument.key),
                )
            )
            lot.remaining -= q
            lot.commission_left -= entry_comm
            lot.slippage_left -= entry_slip
            qty_left -= q
            if lot.remaining <= _EPS:
                book.popleft()
        if qty_left > _EPS:
            share = qty_left / f.quantity
            book.append(_Lot(f, qty_left, f.commission * share, slip * share))
        self.trades.extend(closed)
        return closed


def match_round_trips(
    fills: Iterable[Fill],
    *,
    signal_prices: Mapping[str, float | None] | None = None,
    price_paths: Mapping[str, PricePath] | None = None,
) -> list[ClosedTrade]:
    """Match fills FIFO per (strategy, instrument) into closed trades.

    Each opening fill becomes a lot; a closing fill consumes the oldest lots first and yields one
    ClosedTrade per lot (part) it closes. A fill that reverses the position closes what is open
    and opens a new lot with the remainder. Commission and slippage are shared out by quantity.
    ``signal_prices`` maps client_order_id to the order's signal price; ``price_paths`` maps an
    instrument key to its (ts, price) path for MAE/MFE (without one, excursions come from the
    entry and exit prices alone).
    """
    signal_prices = signal_prices or {}
    m = FifoMatcher(price_paths)
    for f in sorted(fills, key=lambda x: x.ts):
        m.add(f, signal_prices.get(f.client_order_id))
    return m.trades


def _closed_trade(
    entry: Fill,
    exit_: Fill,
    qty: float,
    commissions: float,
    slippage: float,
    path: PricePath | None,
) -> ClosedTrade:
    direction = entry.side.sign
    mult = entry.instrument.multiplier
    gross = (exit_.price - entry.price) * direction * qty * mult
    pnl = gross - commissions
    notional = entry.price * qty * mult
    prices = [entry.price, *path_between(path, entry.ts, exit_.ts), exit_.price]
    mae, mfe = excursions(entry.price, direction, prices)
    return ClosedTrade(
        trade_id=f"{entry.fill_id}>{exit_.fill_id}",
        strategy_id=entry.strategy_id,
        instrument=entry.instrument.key,
        direction=direction,
        quantity=float(qty),
        entry_ts=float(entry.ts),
        exit_ts=float(exit_.ts),
        entry_price=float(entry.price),
        exit_price=float(exit_.price),
        multiplier=mult,
        commissions=float(commissions),
        gross_pnl=float(gross),
        pnl=float(pnl),
        return_pct=float(pnl / notional) if notional else 0.0,
        holding_seconds=max(0.0, float(exit_.ts - entry.ts)),
        mae=float(mae * qty * mult),
        mfe=float(mfe * qty * mult),
        slippage=float(slippage),
        entry_fill_id=entry.fill_id,
        exit_fill_id=exit_.fill_id,
    )


def fill_rate(orders: Iterable[Order]) -> float:
    """Filled quantity over ordered quantity, for orders that are done (still-working orders
    would bias it low). Rejected and cancelled orders count with what they filled. NaN if none."""
    asked = filled = 0.0
    for o in orders:
        if o.status.is_terminal:
            asked += o.quantity
            filled += o.filled_quantity
    return filled / asked if asked > 0 else math.nan


# ======================================================================= real-time metrics


@dataclass(frozen=True, slots=True)
class PerformanceMetrics:
    """One strategy's (or the portfolio's, ``name == PORTFOLIO``) numbers at one instant."""

    name: str
    ts: float
    capital: float
    equity: float
    realized_pnl: float
    unrealized_pnl: float
    total_pnl: float
    pnl_today: float
    drawdown: float
    max_drawdown: float
    rolling_sharpe: float
    gross_exposure: float
    net_exposure: float
    traded_value_today: float
    turnover_today: float  # traded value today / equity
    closed_trades: int
    win_rate: float
    slippage: float
    slippage_bps: float
    commissions: float
    fill_rate: float
    open_positions: int

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }


PORTFOLIO = "portfolio"


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    ts: float
    day: dt.date
    portfolio: PerformanceMetrics
    strategies: dict[str, PerformanceMetrics]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts": self.ts,
            "day": self.day.isoformat(),
            "portfolio": self.portfolio.to_dict(),
            "strategies": {n: m.to_dict() for n, m in self.strategies.items()},
        }


@dataclass
class _Ledger:
    """One strategy's running totals, folded fill by fill (see MetricsCalculation._ingest)."""

    positions: dict[str, Position] = dataclasses.field(default_factory=dict)
    commissions: float = 0.0
    slippage: float = 0.0
    slippage_base: float = 0.0
    trades: int = 0
    wins: int = 0
    traded: dict[dt.date, float] = dataclasses.field(default_factory=dict)

    def realized(self) -> float:
        return sum(p.realized_pnl for p in self.positions.values())


class MetricsCalculation:
    """Live and post-trade metrics. Not thread-safe: call it from the engine thread.

    ``capital`` is each strategy's allocated capital (the base of its equity and returns).
    Fills of strategies not in ``capital`` (e.g. "manual") are measured with capital 0.

    Real-time metrics are incremental: the engine passes its whole (append-only) fill list each
    time and only fills not seen before are folded in, so a call costs O(new fills + open
    positions), not O(history). If the list is not an extension of the last one (a restart, a
    late execution with an earlier timestamp) everything is replayed in time order.
    """

    def __init__(
        self,
        capital: Mapping[str, float] | None = None,
        *,
        rolling_window: int = 100,
        timezone: str = "America/New_York",
        history: int = 20_000,
    ) -> None:
        if rolling_window < 2:
            raise ValueError(f"rolling_window must be >= 2, got {rolling_window}")
        self.capital: dict[str, float] = dict(capital or {})
        self.rolling_window = rolling_window
        self.tz = ZoneInfo(timezone)
        self._history_len = history
        self._equity: dict[str, deque[tuple[float, float]]] = {}
        self._day: dt.date | None = None
        self._day_open_marks: dict[str, float] = {}
        self.last_snapshot: MetricsSnapshot | None = None
        self.last_trades: list[ClosedTrade] = []
        self._reset()

    def _reset(self) -> None:
        self._ledgers: dict[str, _Ledger] = {}
        self._matcher = FifoMatcher()
        self._seen = 0
        self._last_fill_id: str | None = None
        self._max_ts = -math.inf
        self._last_fill_day: dt.date | None = None
        # Each strategy's positions just before the first fill of _open_day: the base of P&L today.
        self._open_day: dt.date | None = None
        self._open_positions: dict[str, dict[str, Position]] = {}

    def set_capital(self, name: str, capital: float) -> None:
        """Follow a rebalance; the equity history restarts so drawdown isn't a capital move."""
        self.capital[name] = float(capital)
        self._equity.pop(name, None)

    def day_of(self, ts: float) -> dt.date:
        return dt.datetime.fromtimestamp(ts, self.tz).date()

    def day_start(self, day: dt.date) -> float:
        return dt.datetime.combine(day, dt.time(0), self.tz).timestamp()

    # -------------------------------------------------------------------- ingest
    def _ingest(self, fills: Sequence[Fill], signal: Mapping[str, float | None]) -> None:
        n = self._seen
        extends = n == 0 or (len(fills) >= n and fills[n - 1].fill_id == self._last_fill_id)
        new = fills[n:] if extends else fills
        if (
            not extends
            or any(f.ts < self._max_ts for f in new)
            or any(b.ts < a.ts for a, b in itertools.pairwise(new))
        ):
            self._reset()
            new = sorted(fills, key=lambda f: f.ts)
        for f in new:
            self._apply(f, signal.get(f.client_order_id))
        self._seen = len(fills)
        self._last_fill_id = fills[-1].fill_id if fills else None

    def _apply(self, f: Fill, signal_price: float | None) -> None:
        day = self.day_of(f.ts)
        if day != self._last_fill_day:
            # First fill of a new day: remember where every strategy stood before it.
            self._open_day = day
            self._open_positions = {n: dict(lg.positions) for n, lg in self._ledgers.items()}
            self._last_fill_day = day
        lg = self._ledgers.setdefault(f.strategy_id, _Ledger())
        key = f.instrument.key
        pos = lg.positions.get(key) or Position(f.instrument)
        lg.positions[key] = pos.apply_fill(f)
        lg.commissions += f.commission
        if signal_price is not None and signal_price > 0:
            lg.slippage += fill_slippage(f, signal_price)
            lg.slippage_base += f.value
        lg.traded[day] = lg.traded.get(day, 0.0) + f.value
        for t in self._matcher.add(f, signal_price):
            lg.trades += 1
            lg.wins += t.is_win
        self._max_ts = max(self._max_ts, f.ts)

    def _positions_at_open(self, name: str, day: dt.date) -> dict[str, Position]:
        lg = self._ledgers.get(name)
        if lg is None:
            return {}
        if self._open_day == day:
            return self._open_positions.get(name, {})
        # No fill yet today: everything we hold was carried in.
        return lg.positions

    # -------------------------------------------------------------------- real time
    def calculate_real_time_metrics(
        self,
        fills: Sequence[Fill],
        marks: Mapping[str, float],
        *,
        equity: Sequence[tuple[float, float]] | None = None,
        orders: Sequence[Order] = (),
        now: float | None = None,
        day_open_marks: Mapping[str, float] | None = None,
    ) -> MetricsSnapshot:
        """Per-strategy and portfolio metrics from all fills so far and current marks.

        ``fills`` is every fill so far, in arrival order (append-only between calls is the fast
        path). ``equity`` is the account's (ts, equity) series (from the broker); the portfolio's
        equity, drawdown and Sharpe use it when given, otherwise the sum of the strategies.
        ``marks`` are last prices by instrument key. ``day_open_marks`` (e.g. previous closes)
        value positions carried into the day for "P&L today"; without them the first marks seen
        that day are used.
        """
        now = float(now if now is not None else dt.datetime.now(dt.UTC).timestamp())
        day = self.day_of(now)
        if day != self._day:
            self._day = day
            self._day_open_marks = {}
        for k, v in (day_open_marks or {}).items():
            self._day_open_marks[k] = v
        for k, v in marks.items():
            self._day_open_marks.setdefault(k, v)

        signal = {o.client_order_id: o.signal_price for o in orders}
        self._ingest(fills, signal)
        orders_by: dict[str, list[Order]] = {}
        for o in orders:
            orders_by.setdefault(o.strategy_id, []).append(o)

        names = sorted(set(self.capital) | set(self._ledgers))
        strategies = {
            n: self._strategy_metrics(n, orders_by.get(n, []), marks, now, day) for n in names
        }
        portfolio = self._portfolio_metrics(strategies, orders, equity, now)
        snap = MetricsSnapshot(ts=now, day=day, portfolio=portfolio, strategies=strategies)
        self.last_snapshot = snap
        return snap

    def _record(self, name: str, ts: float, value: float) -> deque[tuple[float, float]]:
        hist = self._equity.setdefault(name, deque(maxlen=self._history_len))
        if not hist or ts > hist[-1][0]:
            hist.append((ts, value))
        elif ts == hist[-1][0]:
            hist[-1] = (ts, value)
        return hist

    def _curve_stats(self, series: Sequence[tuple[float, float]]) -> tuple[float, float, float]:
        values = [v for _, v in series]
        dd = drawdown_series(values)
        tail = list(series)[-(self.rolling_window + 1) :]
        rets = simple_returns([v for _, v in tail])
        sharpe = sharpe_ratio(rets, periods_per_year_from_ts([t for t, _ in tail]))
        return (float(dd[-1]) if dd.size else 0.0, float(dd.max()) if dd.size else 0.0, sharpe)

    def _strategy_metrics(
        self, name: str, orders: list[Order], marks: Mapping[str, float], now: float, day: dt.date
    ) -> PerformanceMetrics:
        capital = self.capital.get(name, 0.0)
        lg = self._ledgers.get(name) or _Ledger()
        realized, unrealized, gross, net = _valuation(lg.positions, marks)
        r0, u0, _, _ = _valuation(self._positions_at_open(name, day), self._day_open_marks)
        total = realized + unrealized
        equity = capital + total
        dd, mdd, sharpe = self._curve_stats(self._record(name, now, equity))
        traded_today = lg.traded.get(day, 0.0)
        return PerformanceMetrics(
            name=name,
            ts=now,
            capital=capital,
            equity=equity,
            realized_pnl=realized,
            unrealized_pnl=unrealized,
            total_pnl=total,
            pnl_today=total - (r0 + u0),
            drawdown=dd,
            max_drawdown=mdd,
            rolling_sharpe=sharpe,
            gross_exposure=gross,
            net_exposure=net,
            traded_value_today=traded_today,
            turnover_today=traded_today / equity if equity > 0 else math.nan,
            closed_trades=lg.trades,
            win_rate=lg.wins / lg.trades if lg.trades else math.nan,
            slippage=lg.slippage,
            slippage_bps=lg.slippage / lg.slippage_base * 1e4 if lg.slippage_base > 0 else math.nan,
            commissions=lg.commissions,
            fill_rate=fill_rate(orders),
            open_positions=sum(1 for p in lg.positions.values() if not p.is_flat),
        )

    def _portfolio_metrics(
        self,
        strategies: Mapping[str, PerformanceMetrics],
        orders: Sequence[Order],
        equity: Sequence[tuple[float, float]] | None,
        now: float,
    ) -> PerformanceMetrics:
        s = list(strategies.values())
        capital = sum(m.capital for m in s)
        if equity:
            curve: Sequence[tuple[float, float]] = equity
            eq = float(equity[-1][1])
        else:
            eq = capital + sum(m.total_pnl for m in s)
            curve = self._record(PORTFOLIO, now, eq)
        dd, mdd, sharpe = self._curve_stats(curve)
        traded_today = sum(m.traded_value_today for m in s)
        slip = sum(lg.slippage for lg in self._ledgers.values())
        slip_base = sum(lg.slippage_base for lg in self._ledgers.values())
        trades = sum(lg.trades for lg in self._ledgers.values())
        wins = sum(lg.wins for lg in self._ledgers.values())
        net_qty: dict[str, float] = {}
        for lg in self._ledgers.values():
            for k, p in lg.positions.items():
                net_qty[k] = net_qty.get(k, 0.0) + p.quantity
        return PerformanceMetrics(
            name=PORTFOLIO,
            ts=now,
            capital=capital,
            equity=eq,
            realized_pnl=sum(m.realized_pnl for m in s),
            unrealized_pnl=sum(m.unrealized_pnl for m in s),
            total_pnl=sum(m.total_pnl for m in s),
            pnl_today=sum(m.pnl_today for m in s),
            drawdown=dd,
            max_drawdown=mdd,
            rolling_sharpe=sharpe,
            gross_exposure=sum(m.gross_exposure for m in s),
            net_exposure=sum(m.net_exposure for m in s),
            traded_value_today=traded_today,
            turnover_today=traded_today / eq if eq > 0 else math.nan,
            closed_trades=trades,
            win_rate=wins / trades if trades else math.nan,
            slippage=slip,
            slippage_bps=slip / slip_base * 1e4 if slip_base > 0 else math.nan,
            commissions=sum(m.commissions for m in s),
            fill_rate=fill_rate(orders),
            open_positions=sum(1 for q in net_qty.values() if abs(q) > _EPS),
        )

    # -------------------------------------------------------------------- post trade
    def calculate_post_trade_metrics(
        self,
        fills: Sequence[Fill],
        *,
        orders: Sequence[Order] = (),
        price_paths: Mapping[str, PricePath] | None = None,
    ) -> PostTradeMetrics:
        """Closed trades (FIFO) with MAE/MFE from ``price_paths``, and per-day aggregates."""
        signal = {o.client_order_id: o.signal_price for o in orders}
        trades = match_round_trips(fills, signal_prices=signal, price_paths=price_paths)
        self.last_trades = trades
        return PostTradeMetrics(trades=trades, daily=daily_aggregates(trades, self.day_of))

    def write_daily_report(
        self, directory: Path | str, day: dt.date, post: PostTradeMetrics | None = None
    ) -> list[Path]:
        """Write the day's trades (CSV) and summary (JSON); uses the last computed results."""
        if post is None:
            post = PostTradeMetrics(
                self.last_trades, daily_aggregates(self.last_trades, self.day_of)
            )
        return write_daily_report(directory, day, post, self.day_of, self.last_snapshot)


def _valuation(
    positions: Mapping[Any, Position], marks: Mapping[str, float]
) -> tuple[float, float, float, float]:
    realized = unrealized = gross = net = 0.0
    for p in positions.values():
        realized += p.realized_pnl
        if p.is_flat:
            continue
        mark = marks.get(p.instrument.key)
        # Without a mark, value at cost: better a zero than a made-up price.
        px = mark if mark is not None and math.isfinite(mark) else p.avg_cost
        unrealized += p.unrealized_pnl(px)
        mv = p.market_value(px)
        gross += abs(mv)
        net += mv
    return realized, unrealized, gross, net


# ======================================================================= post-trade metrics


@dataclass(frozen=True, slots=True)
class DailyTradeStats:
    day: dt.date
    strategy_id: str
    trades: int
    wins: int
    gross_pnl: float
    pnl: float
    commissions: float
    slippage: float
    avg_holding_seconds: float
    avg_return: float
    worst_mae: float
    best_mfe: float

    @property
    def win_rate(self) -> float:
        return self.wins / self.trades if self.trades else math.nan

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["day"] = self.day.isoformat()
        d["win_rate"] = None if math.isnan(self.win_rate) else self.win_rate
        return d


@dataclass(frozen=True, slots=True)
class PostTradeMetrics:
    trades: list[ClosedTrade]
    daily: list[DailyTradeStats]

    def for_day(self, day: dt.date) -> list[DailyTradeStats]:
        return [d for d in self.daily if d.day == day]


def daily_aggregates(
    trades: Iterable[ClosedTrade], day_of: Callable[[float], dt.date]
) -> list[DailyTradeStats]:
    """Per (exit day, strategy) aggregates, plus a ``portfolio`` row per day."""
    groups: dict[tuple[dt.date, str], list[ClosedTrade]] = {}
    for t in trades:
        d = day_of(t.exit_ts)
        groups.setdefault((d, t.strategy_id), []).append(t)
        groups.setdefault((d, PORTFOLIO), []).append(t)
    out = []
    for (d, name), ts in sorted(
        groups.items(), key=lambda kv: (kv[0][0], kv[0][1] == PORTFOLIO, kv[0][1])
    ):
        n = len(ts)
        out.append(
            DailyTradeStats(
                day=d,
                strategy_id=name,
                trades=n,
                wins=sum(t.is_win for t in ts),
                gross_pnl=sum(t.gross_pnl for t in ts),
                pnl=sum(t.pnl for t in ts),
                commissions=sum(t.commissions for t in ts),
                slippage=sum(t.slippage for t in ts),
                avg_holding_seconds=sum(t.holding_seconds for t in ts) / n,
                avg_return=sum(t.return_pct for t in ts) / n,
                worst_mae=min(t.mae for t in ts),
                best_mfe=max(t.mfe for t in ts),
            )
        )
    return out


TRADE_FIELDS = [f.name for f in dataclasses.fields(ClosedTrade)]


def write_daily_report(
    directory: Path | str,
    day: dt.date,
    post: PostTradeMetrics,
    day_of: Callable[[float], dt.date],
    snapshot: MetricsSnapshot | None = None,
) -> list[Path]:
    """``trades-YYYY-MM-DD.csv`` (trades closed that day) and ``report-YYYY-MM-DD.json``.

    Written to a temporary name then renamed, so a reader never sees half a report.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    trades = [t for t in post.trades if day_of(t.exit_ts) == day]
    csv_path = d / f"trades-{day.isoformat()}.csv"
    tmp = csv_path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TRADE_FIELDS)
        w.writeheader()
        for t in trades:
            w.writerow(dataclasses.asdict(t))
    tmp.replace(csv_path)
    report = {
        "day": day.isoformat(),
        "daily": [s.to_dict() for s in post.for_day(day)],
        "trades": len(trades),
        "snapshot": snapshot.to_dict() if snapshot is not None and snapshot.day == day else None,
    }
    json_path = d / f"report-{day.isoformat()}.json"
    tmp = json_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    tmp.replace(json_path)
    return [csv_path, json_path]


# =========================================================================== persistence

_SCHEMA = """
CREATE TABLE IF NOT EXISTS metrics_snapshots (
    ts REAL NOT NULL,
    scope TEXT NOT NULL,            -- 'portfolio' or 'strategy'
    name TEXT NOT NULL,
    equity REAL, total_pnl REAL, pnl_today REAL, drawdown REAL, rolling_sharpe REAL,
    gross_exposure REAL, turnover_today REAL, win_rate REAL, slippage REAL, fill_rate REAL,
    data TEXT NOT NULL,             -- the full PerformanceMetrics as JSON
    PRIMARY KEY (ts, scope, name)
);
CREATE TABLE IF NOT EXISTS trades (
    trade_id TEXT PRIMARY KEY,
    strategy_id TEXT NOT NULL,
    instrument TEXT NOT NULL,
    direction INTEGER NOT NULL,
    quantity REAL NOT NULL,
    entry_ts REAL NOT NULL,
    exit_ts REAL NOT NULL,
    entry_price REAL NOT NULL,
    exit_price REAL NOT NULL,
    multiplier INTEGER NOT NULL,
    commissions REAL NOT NULL,
    gross_pnl REAL NOT NULL,
    pnl REAL NOT NULL,
    return_pct REAL NOT NULL,
    holding_seconds REAL NOT NULL,
    mae REAL NOT NULL,
    mfe REAL NOT NULL,
    slippage REAL NOT NULL,
    entry_fill_id TEXT NOT NULL,
    exit_fill_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trades_exit ON trades (exit_ts);
"""


def _nan_none(v: float) -> float | None:
    return None if isinstance(v, float) and math.isnan(v) else v


def store_metrics(
    conn: sqlite3.Connection,
    snapshot: MetricsSnapshot | None = None,
    trades: Iterable[ClosedTrade] = (),
) -> None:
    """Persist a snapshot and closed trades in one transaction; tables are created on first use.

    Re-storing the same snapshot or trade replaces it (keyed by ts/name and trade id), so the
    engine can store "all trades so far" each time without duplicates.
    """
    conn.executescript(_SCHEMA)
    with conn:
        if snapshot is not None:
            rows = [(PORTFOLIO, snapshot.portfolio)] + [
                ("strategy", m) for m in snapshot.strategies.values()
            ]
            conn.executemany(
                "INSERT OR REPLACE INTO metrics_snapshots VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        snapshot.ts,
                        scope,
                        m.name,
                        m.equity,
                        m.total_pnl,
                        m.pnl_today,
                        m.drawdown,
                        _nan_none(m.rolling_sharpe),
                        m.gross_exposure,
                        _nan_none(m.turnover_today),
                        _nan_none(m.win_rate),
                        m.slippage,
                        _nan_none(m.fill_rate),
                        json.dumps(m.to_dict()),
                    )
                    for scope, m in rows
                ],
            )
        conn.executemany(
            f"INSERT OR REPLACE INTO trades VALUES ({','.join('?' * len(TRADE_FIELDS))})",
            [tuple(getattr(t, f) for f in TRADE_FIELDS) for t in trades],
        )


def load_trades(conn: sqlite3.Connection, strategy_id: str | None = None) -> list[ClosedTrade]:
    conn.executescript(_SCHEMA)
    q = f"SELECT {','.join(TRADE_FIELDS)} FROM trades"
    args: tuple[Any, ...] = ()
    if strategy_id is not None:
        q += " WHERE strategy_id = ?"
        args = (strategy_id,)
    return [ClosedTrade(*row) for row in conn.execute(q + " ORDER BY exit_ts, trade_id", args)]


# ============================================================================ half Kelly


@dataclass(frozen=True, slots=True)
class StrategyHistory:
    """What Kelly is computed from. ``returns``: per-period returns (continuous Kelly);
    ``trade_pnls``: per-trade P&L (discrete Kelly). ``auto`` prefers returns when there are
    enough of them, else trades."""

    returns: tuple[float, ...] = ()
    trade_pnls: tuple[float, ...] = ()
    method: Literal["auto", "continuous", "discrete"] = "auto"


class ScalesStrategies(Protocol):
    def scale_strategy(self, name: str, capital: float) -> Any: ...


@dataclass(frozen=True, slots=True)
class KellyDecision:
    strategy: str
    method: str  # "continuous", "discrete" or "skipped"
    observations: int
    kelly: float  # full Kelly (NaN when skipped)
    fraction: float  # the allocated share of total capital
    old_capital: float
    new_capital: float
    reason: str
    applied: bool = False


@dataclass(frozen=True, slots=True)
class RebalanceResult:
    applied: bool
    total_capital: float
    decisions: tuple[KellyDecision, ...]
    reason: str
    errors: tuple[str, ...] = ()

    @property
    def old_allocations(self) -> dict[str, float]:
        return {d.strategy: d.old_capital for d in self.decisions}

    @property
    def new_allocations(self) -> dict[str, float]:
        return {d.strategy: d.new_capital for d in self.decisions}


def kelly_for(
    history: StrategyHistory | Sequence[float], min_observations: int
) -> tuple[str, int, float, str]:
    """(method, observations, full Kelly, reason); method "skipped" when history is too short."""
    if not isinstance(history, StrategyHistory):
        history = StrategyHistory(returns=tuple(history), method="continuous")
    rets = _finite(history.returns)
    pnls = _finite(history.trade_pnls)
    method = history.method
    if method == "auto":
        method = "continuous" if rets.size >= min_observations or pnls.size == 0 else "discrete"
    if method == "continuous":
        if rets.size < min_observations:
            return (
                "skipped",
                int(rets.size),
                math.nan,
                f"{rets.size} returns < {min_observations} needed",
            )
        k = kelly_continuous(rets)
        return "continuous", int(rets.size), k, f"mean/var of {rets.size} returns"
    if pnls.size < min_observations:
        return (
            "skipped",
            int(pnls.size),
            math.nan,
            f"{pnls.size} trades < {min_observations} needed",
        )
    w, r = win_rate_and_payoff(pnls)
    k = w if math.isinf(r) else kelly_discrete(w, r)
    return "discrete", int(pnls.size), k, f"W={w:.3f} R={r:.3f} over {pnls.size} trades"


class Optimization:
    """Half-Kelly rebalancing of capital across strategies.

    ``activity`` is an optional ``log_activity(kind, message, **fields)`` (Diagnostics has one)
    so old -> new allocations land in the operator's activity log, not only the Python log.
    """

    def __init__(
        self,
        cap: float = 0.25,
        min_observations: int = 30,
        *,
        activity: Callable[..., Any] | None = None,
        tolerance: float = 0.005,
    ) -> None:
        self.cap = cap
        self.min_observations = min_observations
        self.activity = activity
        # Moves smaller than this share of the old capital are skipped: churn for nothing.
        self.tolerance = tolerance

    def apply_half_kelly(
        self,
        executor_or_callback: ScalesStrategies | Callable[[str, float], Any],
        histories: Mapping[str, StrategyHistory | Sequence[float]],
        cap: float | None = None,
        min_observations: int | None = None,
        *,
        current: Mapping[str, float],
        total_capital: float | None = None,
    ) -> RebalanceResult:
        """Rebalance ``current`` allocations by half Kelly; returns what changed and why.

        ``total_capital`` defaults to the sum of ``current``. Strategies with too little history
        keep their capital; the others share what is left, each getting
        ``clamp(kelly / 2, 0, cap) * total`` (scaled down together if they would exceed what is
        left). With no strategy eligible nothing is called (a no-op).
        """
        cap = self.cap if cap is None else cap
        min_obs = self.min_observations if min_observations is None else min_observations
        scale = getattr(executor_or_callback, "scale_strategy", executor_or_callback)
        if not callable(scale):
            raise TypeError(
                "executor_or_callback needs scale_strategy(name, capital) or to be callable"
            )
        total = float(sum(current.values()) if total_capital is None else total_capital)
        names = sorted(set(current) | set(histories))
        infos = {n: kelly_for(histories.get(n, ()), min_obs) for n in names}
        eligible = {n: k for n, (m, _, k, _) in infos.items() if m != "skipped"}
        if not eligible or total <= 0:
            why = "no strategy has enough history" if total > 0 else "no capital to allocate"
            decisions = tuple(
                KellyDecision(
                    n,
                    infos[n][0],
                    infos[n][1],
                    infos[n][2],
                    current.get(n, 0.0) / total if total > 0 else 0.0,
                    current.get(n, 0.0),
                    current.get(n, 0.0),
                    infos[n][3],
                )
                for n in names
            )
            self._log(f"half-Kelly rebalance skipped: {why}", why=why)
            return RebalanceResult(False, total, decisions, why)
        kept = sum(current.get(n, 0.0) for n in names if n not in eligible)
        budget = max(0.0, (total - kept) / total)
        fractions = half_kelly_allocations(eligible, cap, budget)
        decisions_l: list[KellyDecision] = []
        errors: list[str] = []
        for n in names:
            method, obs, k, reason = infos[n]
            old = float(current.get(n, 0.0))
            if n not in fractions:
                decisions_l.append(KellyDecision(n, method, obs, k, old / total, old, old, reason))
                continue
            frac = fractions[n]
            new = frac * total
            if not k > 0:
                reason += "; no edge"
            elif k / 2 > cap:
                reason += f"; capped at {cap:g}"
            if 0 < frac < min(k / 2, cap) - _EPS:
                reason += "; scaled down to fit the budget"
            applied = False
            if abs(new - old) > self.tolerance * max(old, _EPS) or (old == 0) != (new == 0):
                try:
                    scale(n, new)
                    applied = True
                    self._log(
                        f"rebalance {n}: {old:,.2f} -> {new:,.2f} (half Kelly {frac:.4f})",
                        strategy=n,
                        old=old,
                        new=new,
                        kelly=k,
                        fraction=frac,
                    )
                except Exception as e:  # one refusal must not stop the others being rebalanced
                    errors.append(f"{n}: {e}")
                    reason += f"; scale_strategy failed: {e}"
                    new = old
            else:
                new = old
                reason += "; change below tolerance"
            decisions_l.append(KellyDecision(n, method, obs, k, frac, old, new, reason, applied))
        result = RebalanceResult(
            applied=any(d.applied for d in decisions_l),
            total_capital=total,
            decisions=tuple(decisions_l),
            reason="rebalanced" if not errors else "rebalanced with errors",
            errors=tuple(errors),
        )
        return result

    def _log(self, message: str, **fields: Any) -> None:
        log.info(message)
        if self.activity is not None:
            self.activity("rebalance", message, **fields)


__all__ = [
    "PORTFOLIO",
    "ClosedTrade",
    "DailyTradeStats",
    "KellyDecision",
    "MetricsCalculation",
    "MetricsSnapshot",
    "Optimization",
    "PerformanceMetrics",
    "PostTradeMetrics",
    "RebalanceResult",
    "StrategyHistory",
    "daily_aggregates",
    "drawdown_series",
    "excursions",
    "fill_rate",
    "fill_slippage",
    "half_kelly_allocations",
    "kelly_continuous",
    "kelly_discrete",
    "kelly_for",
    "load_trades",
    "match_round_trips",
    "max_drawdown",
    "price_path_from_bars",
    "rolling_sharpe",
    "sharpe_ratio",
    "store_metrics",
    "win_rate_and_payoff",
    "write_daily_report",
]
