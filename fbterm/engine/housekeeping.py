"""The engine's timers: stale feeds, equity and risk limits, metrics, daily reports, rebalancing.

None of this is driven by market data: it runs on the housekeeping loop (four times a second),
so a silent feed is noticed, equity is watched, metrics are stored and the day's report is
written whether the market moves or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fbterm.config import Config
from fbterm.engine.events import ActivityLog
from fbterm.engine.market import MarketState
from fbterm.execution.brokers.base import Broker
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal, JournalWriteError
from fbterm.metrics.reports import PostTradeMetrics, daily_aggregates
from fbterm.model import Fill
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.metrics.live import MetricsSnapshot
    from fbterm.metrics.trades import ClosedTrade


class MarketHours:
    """Whether silence on a feed means something: always for the simulated market and
    replays; for IB only while the exchange is open (a quiet feed at night is normal), unless
    ``always`` (instruments that trade around the clock: ``broker.ib.feed_hours``)."""

    def __init__(self, source: str, *, always: bool = False) -> None:
        self.source = source
        self.always = always
        self._cache: tuple[int, bool] | None = None  # (minute, open): asked every 0.25 s
        self._calendar: Any = None

    def is_open(self, now: float) -> bool:
        if self.source != "ib" or self.always:
            return True
        minute = int(now // 60)
        if self._cache is not None and self._cache[0] == minute:
            return self._cache[1]
        try:
            import exchange_calendars as xcals
            import pandas as pd

            cal = self._calendar or xcals.get_calendar("XNYS")
            self._calendar = cal
            is_open = bool(cal.is_open_on_minute(pd.Timestamp(minute * 60, unit="s", tz="UTC")))
        except Exception:
            is_open = True  # unknown: better a false "stale" than a silent dead feed
        self._cache = (minute, is_open)
        return is_open


class EngineMetrics:
    """Real-time metrics per strategy and for the portfolio, stored and reported.

    Stored in the journal database every 10 s (and on demand), and the day's post-trade report
    is written to the report directory when the trading day rolls.
    """

    def __init__(
        self,
        cfg: Config,
        executor: StrategyExecutor,
        oms: OrderManagement,
        market: MarketState,
        journal: Journal,
        activity: ActivityLog,
        clock: Callable[[], float],
    ) -> None:
        from fbterm.metrics.live import MetricsCalculation

        self.config = cfg
        self.executor = executor
        self.oms = oms
        self.market = market
        self.journal = journal
        self.activity = activity
        self.clock = clock
        self.calc = MetricsCalculation(
            rolling_window=cfg.metrics.rolling_window,
            timezone=cfg.market.timezone,
            calendar=cfg.market.calendar,
            bar_seconds=cfg.market.bar_seconds,
        )
        self.snapshot: MetricsSnapshot | None = None
        self._stored = 0.0
        self._report_day: dt.date | None = None
        self._unstored: list[ClosedTrade] = []
        # Memory holds only recent fills: every fill the journal held at start is folded in
        # once, here, and later ones as they arrive (update).
        self._seen = oms.fills_total
        self._prime()

    def _prime(self) -> None:
        calc = self.calc
        today = calc.day_of(self.clock())
        signal = self._signal_prices()
        restored = itertools.islice(self.journal.iter_fills(), self._seen)
        for i, f in enumerate(restored, 1):
            calc.add_fills((f,), signal)
            if i % 10_000 == 0:  # only today's closed trades may still need storing
                self._keep_today(today)
        self._keep_today(today)

    def _keep_today(self, today: dt.date) -> None:
        day_of = self.calc.day_of
        self._unstored += [t for t in self.calc.take_closed_trades() if day_of(t.exit_ts) == today]

    def _signal_prices(self) -> dict[str, float | None]:
        return {oid: o.signal_price for oid, o in self.oms.orders.items()}

    def _new_fills(self) -> list[Fill]:
        oms = self.oms
        try:
            new = oms.fills.since(self._seen)
        except LookupError:  # more fills since the last look than memory keeps
            new = list(itertools.islice(self.journal.iter_fills(), self._seen, None))
        self._seen = oms.fills_total
        return new

    def update(
        self, now: float | None = None, *, store: bool | None = None
    ) -> MetricsSnapshot | None:
        """Recompute the metrics (engine thread); a failure is logged, never raised."""
        now = now or self.clock()
        calc, oms = self.calc, self.oms
        for name, slot in self.executor.slots.items():
            if calc.capital.get(name) != slot.capital:
                calc.set_capital(name, slot.capital)
        marks = {k: m for k in oms.positions if (m := self.market.mark(k)) is not None}
        try:
            new = self._new_fills()
            calc.add_fills(new, {f.client_order_id: _signal(oms, f) for f in new})
            self._unstored += calc.take_closed_trades()
            snap = calc.calculate_real_time_metrics(
                None,
                marks,
                orders=list(oms.orders.values())[-5000:],
                now=now,
                market_ts=self.market.last_ts,
            )
        except JournalWriteError:
            raise
        except Exception as e:  # metrics must never stop trading
            self.activity.log(
                "error", "metrics", f"real-time metrics failed: {type(e).__name__}: {e}"
            )
            return None
        self.snapshot = snap
        if store or (store is None and now - self._stored >= 10.0):
            self._stored = now
            self._store(snap)
        day = snap.day
        if self._report_day is None:
            self._report_day = day
        elif day != self._report_day:
            self.write_daily_report(self._report_day)
            self._report_day = day
        return snap

    def _store(self, snap: MetricsSnapshot | None) -> None:
        try:
            self.journal.store_metrics(snap, self._unstored)
            self._unstored = []
        except Exception as e:  # a journal failure is the engine's fault handler's to say
            self.activity.log(
                "error", "metrics", f"storing metrics failed: {type(e).__name__}: {e}"
            )

    def write_daily_report(self, day: dt.date | None = None) -> list[Path]:
        """The day's closed trades (CSV) and summary (JSON) under the report directory."""
        try:
            day = day or (self.snapshot.day if self.snapshot else None)
            if day is None:
                return []
            self._store(None)
            calc = self.calc
            start = calc.day_start(day)
            trades = self.journal.closed_trades(start, calc.day_start(day + dt.timedelta(days=1)))
            post = PostTradeMetrics(trades, daily_aggregates(trades, calc.day_of))
            paths = calc.write_daily_report(self.config.report_dir, day, post)
        except Exception as e:
            self.activity.log("error", "metrics", f"daily report failed: {type(e).__name__}: {e}")
            return []
        self.activity.log(
            "info", "metrics", f"daily report for {day}: {', '.join(str(p) for p in paths)}"
        )
        return paths


def _signal(oms: OrderManagement, f: Fill) -> float | None:
    o = oms.orders.get(f.client_order_id)
    return o.signal_price if o is not None else None


def rebalance(executor: StrategyExecutor, cfg: Config) -> tuple[bool, str]:
    """Move capital between strategies by half Kelly on the returns of their equity samples
    (capital moved in or out by earlier rebalances is not a return)."""
    from fbterm.metrics.optimization import Optimization, StrategyHistory
    from fbterm.stats import returns_net_of_flows

    slots = executor.slots
    histories = {
        n: StrategyHistory(
            returns=tuple(
                returns_net_of_flows([h[1] for h in s.history], [h[2] for h in s.history]).tolist()
            ),
            method="continuous",
        )
        for n, s in slots.items()
    }
    res = Optimization().apply_half_kelly(
        executor,
        histories,
        cap=cfg.metrics.kelly_cap,
        min_observations=cfg.metrics.kelly_min_observations,
        current={n: s.capital for n, s in slots.items()},
    )
    if not res.applied:
        return True, f"rebalance: no change ({res.reason})"
    moves = ", ".join(
        f"{n} {res.old_allocations[n]:,.0f} -> {res.new_allocations[n]:,.0f}"
        for n in res.new_allocations
    )
    return True, f"rebalance (half Kelly): {moves}"


class Housekeeping:
    """The loop that watches what market data cannot: feeds, equity, metrics, the clock."""

    def __init__(
        self,
        cfg: Config,
        market: MarketState,
        broker: Broker,
        risk: PortfolioLevelRisk,
        executor: StrategyExecutor,
        metrics: EngineMetrics,
        activity: ActivityLog,
        clock: Callable[[], float],
        *,
        journal: Journal | None = None,
        persist: Callable[[], None] | None = None,
        feed_ended: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = cfg
        self.market = market
        self.broker = broker
        self.feed_ended = feed_ended
        self.risk = risk
        self.executor = executor
        self.metrics = metrics
        self.activity = activity
        self.clock = clock
        self.journal = journal
        # Journals the operator state (the keeper's sync): the loss-limit baselines move with
        # equity, and a rebalance moves allocations.
        self.persist = persist or (lambda: None)
        self.hours = MarketHours(cfg.market.source, always=cfg.broker.ib.feed_hours == "always")
        self._metrics_at = 0.0

    def equity(self) -> float:
        """The account's equity as the venue reports it; the risk manager's when it cannot."""
        try:
            return self.broker.query_account_details().equity
        except Exception:
            return self.risk.equity

    async def run(self) -> None:
        stale_after = self.config.market.stale_after
        last_rebalance = self.clock()
        while True:
            await asyncio.sleep(0.25)
            now = self.clock()
            if self.hours.is_open(now) and not self.feed_ended():
                self.market.check_staleness(now, stale_after)
            reason = self.risk.update_equity(self.equity(), now)
            self.persist()
            if reason:
                self.activity.alert(
                    "critical", "Risk limit breached", reason, key=f"breach:{reason[:20]}"
                )
            self.executor.sample_equity(now)
            if now - self._metrics_at >= 1.0:
                self._metrics_at = now
                self.metrics.update(now)
            iv = self.config.metrics.rebalance_interval
            if iv > 0 and now - last_rebalance >= iv:
                last_rebalance = now
                # The new allocations commit before the lines that announce them.
                tx = self.journal.group() if self.journal is not None else contextlib.nullcontext()
                with tx:
                    ok, msg = rebalance(self.executor, self.config)
                    self.persist()
                    self.activity.log("info" if ok else "warning", "metrics", msg)
