"""Real-time metrics: :class:`MetricsCalculation`, its per-strategy ledgers and snapshots.

:class:`MetricsCalculation` keeps the little state a live view needs (equity history for
drawdown and rolling Sharpe, the day's opening marks for "P&L today") and folds fills in
incrementally; the statistics themselves come from :mod:`fbterm.stats` and the trade matching
from :mod:`fbterm.metrics.trades`.

Conventions: money amounts are in account currency and include the instrument multiplier;
drawdown is a non-negative fraction below the running peak; timestamps are epoch seconds UTC
and "a day" is the exchange's trading session (``calendar``: it rolls at the exchange's
close), or without a calendar the calendar day in ``timezone``. The rolling Sharpe is over
returns from one bar period to the next (``bar_seconds``), annualised by that period, and NaN
(shown as a dash) until there are enough of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fbterm.metrics.reports import (
    PORTFOLIO,
    PostTradeMetrics,
    daily_aggregates,
    write_daily_report,
)
from fbterm.metrics.trades import (
    QTY_EPS,
    ClosedTrade,
    FifoMatcher,
    PricePath,
    fill_rate,
    fill_slippage,
    match_round_trips,
)
from fbterm.model import Fill, Order, Position
from fbterm.sessions import trading_day_clock
from fbterm.stats import drawdown_series, period_sharpe


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

    Real-time metrics are incremental: a caller may pass its whole (append-only) fill list each
    time and only fills not seen before are folded in, so a call costs O(new fills + open
    positions), not O(history). If the list is not an extension of the last one (a restart, a
    late execution with an earlier timestamp) everything is replayed in time order.

    A caller that does not keep every fill (the engine: memory holds only recent ones) hands
    each fill over once with :meth:`add_fills` and passes ``fills=None``; trades closed by
    those fills wait in :meth:`take_closed_trades` for the caller to store.
    """

    def __init__(
        self,
        capital: Mapping[str, float] | None = None,
        *,
        rolling_window: int = 100,
        timezone: str = "America/New_York",
        history: int = 20_000,
        calendar: str | None = None,
        bar_seconds: float = 60.0,
    ) -> None:
        if rolling_window < 2:
            raise ValueError(f"rolling_window must be >= 2, got {rolling_window}")
        if not bar_seconds > 0:
            raise ValueError(f"bar_seconds must be > 0, got {bar_seconds}")
        self.capital: dict[str, float] = dict(capital or {})
        self.rolling_window = rolling_window
        self.bar_seconds = float(bar_seconds)
        self.tz = ZoneInfo(timezone)
        self._session = trading_day_clock(calendar) if calendar else None
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
        self._closed: list[ClosedTrade] = []
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
        if self._session is not None:
            return self._session(ts)
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
            self._closed.append(t)
        self._matcher.trades.clear()  # kept in _closed until taken: memory must not grow
        self._max_ts = max(self._max_ts, f.ts)

    def add_fills(self, fills: Iterable[Fill], signal: Mapping[str, float | None]) -> None:
        """Fold in fills the caller hands over once each, in arrival order (no replay)."""
        for f in fills:
            self._apply(f, signal.get(f.client_order_id))

    def take_closed_trades(self) -> list[ClosedTrade]:
        """Trades closed since the last call, for the caller to store."""
        out, self._closed = self._closed, []
        return out

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
        fills: Sequence[Fill] | None,
        marks: Mapping[str, float],
        *,
        equity: Sequence[tuple[float, float]] | None = None,
        orders: Sequence[Order] = (),
        now: float | None = None,
        day_open_marks: Mapping[str, float] | None = None,
        market_ts: float | None = None,
    ) -> MetricsSnapshot:
        """Per-strategy and portfolio metrics from all fills so far and current marks.

        ``fills`` is every fill so far, in arrival order (append-only between calls is the fast
        path); None when they were handed over with :meth:`add_fills`. ``equity`` is the account's (ts, equity) series (from the broker); the portfolio's
        equity, drawdown and Sharpe use it when given, otherwise the sum of the strategies.
        ``marks`` are last prices by instrument key. ``day_open_marks`` (e.g. previous closes)
        value positions carried into the day for "P&L today"; without them the first marks seen
        that day are used. ``market_ts`` is the market's own clock (a simulated or replayed
        market runs faster than the wall clock): equity is sampled on it, so returns are per
        bar of market time; default ``now``.
        """
        now = float(now if now is not None else dt.datetime.now(dt.UTC).timestamp())
        sample_ts = now if market_ts is None else float(market_ts)
        day = self.day_of(now)
        if day != self._day:
            self._day = day
            self._day_open_marks = {}
        for k, v in (day_open_marks or {}).items():
            self._day_open_marks[k] = v
        for k, v in marks.items():
            self._day_open_marks.setdefault(k, v)

        if fills is not None:
            self._ingest(fills, {o.client_order_id: o.signal_price for o in orders})
            self._closed.clear()  # whole-list callers read trades from post-trade metrics
        orders_by: dict[str, list[Order]] = {}
        for o in orders:
            orders_by.setdefault(o.strategy_id, []).append(o)

        names = sorted(set(self.capital) | set(self._ledgers))
        strategies = {
            n: self._strategy_metrics(n, orders_by.get(n, []), marks, now, day, sample_ts)
            for n in names
        }
        portfolio = self._portfolio_metrics(strategies, orders, equity, now, sample_ts)
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
        sharpe = period_sharpe(
            [t for t, _ in series], values, self.bar_seconds, self.rolling_window
        )
        return (float(dd[-1]) if dd.size else 0.0, float(dd.max()) if dd.size else 0.0, sharpe)

    def _strategy_metrics(
        self,
        name: str,
        orders: list[Order],
        marks: Mapping[str, float],
        now: float,
        day: dt.date,
        sample_ts: float,
    ) -> PerformanceMetrics:
        capital = self.capital.get(name, 0.0)
        lg = self._ledgers.get(name) or _Ledger()
        realized, unrealized, gross, net = _valuation(lg.positions, marks)
        r0, u0, _, _ = _valuation(self._positions_at_open(name, day), self._day_open_marks)
        total = realized + unrealized
        equity = capital + total
        dd, mdd, sharpe = self._curve_stats(self._record(name, sample_ts, equity))
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
        sample_ts: float,
    ) -> PerformanceMetrics:
        s = list(strategies.values())
        capital = sum(m.capital for m in s)
        if equity:
            curve: Sequence[tuple[float, float]] = equity
            eq = float(equity[-1][1])
        else:
            eq = capital + sum(m.total_pnl for m in s)
            curve = self._record(PORTFOLIO, sample_ts, eq)
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
            open_positions=sum(1 for q in net_qty.values() if abs(q) > QTY_EPS),
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


__all__ = ["MetricsCalculation", "MetricsSnapshot", "PerformanceMetrics"]
