"""What the engine shows: snapshots, their steady delivery to subscribers, the headless summary.

:class:`SnapshotBuilder` reads the engine's state into one immutable
:class:`~fbterm.snapshot.EngineSnapshot`; :class:`Publisher` hands snapshots to subscribers on a
steady clock (a burst of ticks never floods the console, a quiet market never starves it);
:func:`summary_dict` and :func:`format_summary` turn a snapshot into what ``fbterm run
--headless`` prints and the control socket's ``status`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fbterm.commands import CommandResult
from fbterm.config import Config
from fbterm.engine.events import ActivityLog, OrderEvents, VenueLink
from fbterm.engine.greeks import GreekBook
from fbterm.engine.housekeeping import EngineMetrics
from fbterm.engine.market import MarketFeed, MarketState
from fbterm.execution.brokers.base import Broker, BrokerPosition, ConnectionState
from fbterm.execution.orders import OrderManagement
from fbterm.model import Option
from fbterm.risk.greeks import total as total_greeks
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.snapshot import EngineSnapshot, FeedStatus, PositionRow, RiskView, StrategyRow
from fbterm.strategies.executor import StrategyExecutor

if TYPE_CHECKING:
    from fbterm.engine.reconcile import Reconciler
    from fbterm.engine.warmup import Warmup
    from fbterm.model import AccountDetails

Subscriber = Callable[[EngineSnapshot], None]


class Publisher:
    """Snapshots to subscribers, each at most at its own rate (engine thread).

    ``build(running)`` makes a snapshot; the newest one is also kept for :meth:`latest`.
    """

    def __init__(self, build: Callable[[bool], EngineSnapshot], activity: ActivityLog) -> None:
        self.build = build
        self.activity = activity
        self.subscribers: list[list[Any]] = []  # [callback, min_interval, last_sent]
        self.snapshot: EngineSnapshot | None = None

    def subscribe(self, callback: Subscriber, hz: float = 10.0) -> Callable[[], None]:
        entry: list[Any] = [callback, 1.0 / max(hz, 0.1), 0.0]
        self.subscribers.append(entry)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self.subscribers.remove(entry)

        return unsubscribe

    async def run(self) -> None:
        """Snapshots on a steady clock, whatever the tick rate."""
        nxt = time.monotonic()
        while True:
            interval = min((e[1] for e in self.subscribers), default=0.1)
            nxt += interval
            delay = nxt - time.monotonic()
            if delay < -interval:
                nxt = time.monotonic()
                delay = 0.0
            await asyncio.sleep(max(delay, 0.0))
            if self.subscribers:
                self.publish()

    def maybe_publish(self) -> None:
        """Publish if any subscriber is due; checked after every market-data step too: when
        the feed keeps the engine busy, the publish timer can wake late, and the screen must
        not slow down with the market."""
        if self.subscribers:
            now = time.monotonic()
            if any(now - e[2] >= e[1] for e in self.subscribers):
                self.publish()

    def publish(self, force: bool = False, running: bool = True) -> None:
        now = time.monotonic()
        due = [e for e in self.subscribers if force or now - e[2] >= e[1]]
        snap = self.build(running)
        self.snapshot = snap
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
                    self.subscribers.remove(e)
                self.activity.log(
                    "error", "engine", f"snapshot subscriber failed and was removed: {ex}"
                )


@dataclass(slots=True)
class SessionNotes:
    """What this session has to say about itself: how the last one ended and what was
    recovered (``note``), and the line it stopped on if the journal failed (``fatal``)."""

    note: str = ""
    fatal: str = ""


class SnapshotBuilder:
    """Reads the engine's state into one :class:`EngineSnapshot` (engine thread only)."""

    def __init__(
        self,
        cfg: Config,
        broker: Broker,
        oms: OrderManagement,
        risk: PortfolioLevelRisk,
        executor: StrategyExecutor,
        market: MarketState,
        feed: MarketFeed,
        metrics: EngineMetrics,
        events: OrderEvents,
        link: VenueLink,
        activity: ActivityLog,
        results: Iterable[CommandResult],
        clock: Callable[[], float],
        *,
        notes: SessionNotes | None = None,
        reconciler: Reconciler | None = None,
        warmup: Warmup | None = None,
    ) -> None:
        self.config = cfg
        self.reconciler = reconciler
        self.warmup = warmup
        self.broker = broker
        self.oms = oms
        self.risk = risk
        self.executor = executor
        self.market = market
        self.feed = feed
        self.metrics = metrics
        self.events = events
        self.link = link
        self.activity = activity
        self.results = results
        self.greek_book = GreekBook(market, oms, clock, cfg.market.simulated.risk_free_rate)
        self.clock = clock
        self.notes = notes or SessionNotes()
        self._seq = 0

    def build(self, running: bool = True) -> EngineSnapshot:
        now = self.clock()
        self._seq += 1
        acct: AccountDetails | None
        try:
            acct = self.broker.query_account_details()
        except Exception:
            acct = None
        oms, risk = self.oms, self.risk
        positions = self._positions()
        strategies = self._strategies()
        gross = self.market.gross_exposure(oms.positions)
        eq = acct.equity if acct else risk.equity
        greek_rows = self.greek_book.rows()
        greeks = total_greeks(greek_rows)
        risk_view = RiskView(
            risk.state,
            risk.reason,
            eq,
            max(risk.peak, eq),
            (1 - eq / risk.peak) * 100 if risk.peak > 0 else 0.0,
            risk.daily_pnl,
            gross,
            risk.orders_per_second(),
            risk.gauges(gross, greeks),
            greek_rows,
            greeks,
        )
        feeds = tuple(
            FeedStatus(s, f.last_wall, now - f.last_wall if f.last_wall else math.inf, f.stale)
            for s, f in self.market.feeds.items()
        )
        lat = sorted(list(oms.ack_latencies)[-1000:])
        p50 = lat[len(lat) // 2] * 1000 if lat else None
        p99 = lat[min(int(len(lat) * 0.99), len(lat) - 1)] * 1000 if lat else None
        live = self.config.broker.kind == "ib"
        read_only = self.link.state is ConnectionState.READ_ONLY or oms.read_only is not None
        return EngineSnapshot(
            seq=self._seq,
            ts=now,
            mode="READ-ONLY" if read_only else ("LIVE" if live else "PAPER"),
            broker=self.broker.name,
            account=acct.account if acct else "",
            connection=self.link.state.value,
            connection_message=self.link.message,
            account_details=acct,
            positions=positions,
            open_orders=tuple(oms.open.values()),
            strategies=strategies,
            risk=risk_view,
            feeds=feeds,
            log=tuple(self.activity.lines)[-200:],
            latency_ms_p50=p50,
            latency_ms_p99=p99,
            last_prices=dict(self.market.prices),
            quotes=self._quotes(positions),
            results=tuple(self.results),
            ticks_processed=self.feed.ticks_processed,
            fills_total=oms.fills_total,
            running=running,
            session_note=self.notes.note,
            fatal=self.notes.fatal,
            connection_since=self.link.since,
            connection_history=tuple(self.link.history),
            reconciliation=self.reconciler.view() if self.reconciler is not None else None,
            warmup=self.warmup.view() if self.warmup is not None else None,
            alerts=tuple(self.activity.alerts),
            market_data_delayed=bool(getattr(self.feed.source, "delayed", False)),
        )

    def _quotes(self, positions: tuple[PositionRow, ...]) -> dict[str, tuple[float, float]]:
        """The feed's bid/ask, plus the option quotes behind the option positions' marks."""
        quotes = dict(self.market.quotes)
        for p in positions:
            q = self.market.option_marks.get(p.symbol)
            if q is not None:
                quotes[p.symbol] = (q.bid, q.ask)
        return quotes

    def _positions(self) -> tuple[PositionRow, ...]:
        rows = []
        oms = self.oms
        for key, p in sorted(oms.positions.items()):
            if p.is_flat:
                continue
            last = self.market.mark(key)
            delta = None
            if isinstance(p.instrument, Option):
                q = self.market.option_marks.get(key)
                delta = q.delta if q else None
            holders = tuple(
                sorted(
                    sid
                    for sid, book in oms.by_strategy.items()
                    if key in book and not book[key].is_flat
                )
            )
            rows.append(
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
        return tuple(rows)

    def _strategies(self) -> tuple[StrategyRow, ...]:
        rows = []
        ms = self.metrics.snapshot
        executor = self.executor
        for name, slot in executor.slots.items():
            pm = ms.strategies.get(name) if ms is not None else None
            realized, unrealized = executor.pnl(name)
            eq = slot.capital + realized + unrealized
            pos = executor.positions_of(name)
            pos_text = ", ".join(f"{k} {p.quantity:+g}" for k, p in sorted(pos.items())) or "flat"
            day_pnl = eq - slot.day_start_equity if slot.day_start_equity is not None else 0.0
            dd = (1 - eq / slot.peak_equity) * 100 if slot.peak_equity > 0 else 0.0
            rows.append(
                StrategyRow(
                    name,
                    slot.spec,
                    slot.state,
                    slot.capital,
                    slot.symbols,
                    pos_text,
                    day_pnl,
                    realized + unrealized,
                    pm.closed_trades if pm else 0,
                    slot.last_signal,
                    slot.error,
                    eq,
                    max(dd, 0.0),
                    fills=self.events.fills_by_strategy.get(name, 0),
                    sharpe=_finite(pm.rolling_sharpe) if pm else None,
                    win_rate_pct=_finite(pm.win_rate * 100) if pm else None,
                    params=tuple(slot.strategy.p.items()),
                )
            )
        return tuple(rows)


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


# ------------------------------------------------------------------------ headless summary


def summary_dict(
    s: EngineSnapshot, broker_positions: list[BrokerPosition] | None = None
) -> dict[str, Any]:
    """A snapshot as plain data: what ``--json`` prints and the control socket answers.

    ``broker_positions`` are the venue's own (IB: the whole account, not only ours).
    """
    a = s.account_details
    r = s.reconciliation
    notes = dict(r.order_notes) if r is not None else {}
    return {
        "account_positions": [
            {
                "symbol": p.instrument.key,
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "account": p.account,
                "market_price": p.market_price,
            }
            for p in (broker_positions or [])
        ],
        "previous_session": s.session_note,
        "mode": s.mode,
        "broker": s.broker,
        "account": s.account,
        "connection": s.connection,
        "connection_message": s.connection_message,
        "connection_since": s.connection_since,
        "connection_history": [
            {"ts": c.ts, "state": c.state, "message": c.message} for c in s.connection_history
        ],
        "trading_state": s.risk.state.value,
        "halt_reason": s.risk.halt_reason,
        "ticks_processed": s.ticks_processed,
        "fills": s.fills_total,
        "account_values": None
        if a is None
        else {
            "cash": a.cash,
            "equity": a.equity,
            "buying_power": a.buying_power,
            "margin_used": a.margin_used,
            "realized_pnl": a.realized_pnl,
            "unrealized_pnl": a.unrealized_pnl,
        },
        "positions": [
            {
                "symbol": p.symbol,
                "quantity": p.quantity,
                "avg_cost": p.avg_cost,
                "last": p.last,
                "market_value": p.market_value,
                "unrealized_pnl": p.unrealized_pnl,
                "realized_pnl": p.realized_pnl,
                "strategies": list(p.strategies),
            }
            for p in s.positions
        ],
        "open_orders": [
            {
                "id": o.client_order_id,
                "strategy": o.strategy_id,
                "symbol": o.symbol,
                "side": o.side.value,
                "type": o.order_type.value,
                "quantity": o.quantity,
                "filled": o.filled_quantity,
                "limit": o.limit_price,
                "stop": o.stop_price,
                "status": o.status.value,
                "broker_id": o.broker_order_id,
                "perm_id": o.broker_perm_id,
                "note": notes.get(o.client_order_id, ""),
            }
            for o in s.open_orders
        ],
        "reconciliation": None
        if r is None
        else {
            "runs": r.runs,
            "last": r.last_ts,
            "trigger": r.last_trigger,
            "clean": r.clean,
            "error": r.error,
            "differences": list(r.differences),
            "differences_at": r.differences_ts,
            "venue_open_orders": r.venue_open_orders,
        },
        "warmup": None
        if s.warmup is None
        else {"done": s.warmup.done, "total": s.warmup.total, "text": s.warmup.text},
        "alerts": [
            {"ts": a.ts, "severity": a.severity, "title": a.title, "body": a.body} for a in s.alerts
        ],
        "strategies": [
            {
                "name": r.name,
                "class": r.cls,
                "state": r.state.value,
                "allocation": r.allocation,
                "position": r.position,
                "pnl": r.pnl_total,
                "fills": r.fills,
                "trades": r.trades,
                "error": r.error,
            }
            for r in s.strategies
        ],
        "latency_ms": {"p50": s.latency_ms_p50, "p99": s.latency_ms_p99},
    }


def format_summary(
    s: EngineSnapshot,
    *,
    as_json: bool = False,
    broker_positions: list[BrokerPosition] | None = None,
) -> str:
    """The summary ``fbterm run --headless`` prints at the end: a table, or JSON."""
    d = summary_dict(s, broker_positions)
    if as_json:
        return json.dumps(d, indent=2)
    lines = [f"session: {d['previous_session']}"] if d["previous_session"] else []
    lines += [
        f"mode {d['mode']}  broker {d['broker']}  account {d['account']}  connection {d['connection']}  "
        f"trading {d['trading_state']}" + (f" ({d['halt_reason']})" if d["halt_reason"] else ""),
        f"ticks {d['ticks_processed']:,}  fills {d['fills']:,}  ack latency p50/p99 "
        f"{_ms(s.latency_ms_p50)}/{_ms(s.latency_ms_p99)}",
    ]
    lines += _venue_lines(s)
    av = d["account_values"]
    if av:
        lines.append("")
        lines.append("ACCOUNT")
        for k, v in av.items():
            lines.append(f"  {k:<15}{v:>16,.2f}")
    lines.append("")
    lines.append(f"POSITIONS ({len(d['positions'])})")
    if d["positions"]:
        lines.append(
            f"  {'symbol':<22}{'qty':>10}{'avg cost':>12}{'last':>12}{'unrealized':>14}{'realized':>12}"
        )
        for p in d["positions"]:
            last = f"{p['last']:,.2f}" if p["last"] is not None else "-"
            lines.append(
                f"  {p['symbol']:<22}{p['quantity']:>10,.0f}{p['avg_cost']:>12,.2f}{last:>12}"
                f"{p['unrealized_pnl']:>14,.2f}{p['realized_pnl']:>12,.2f}"
            )
    if d["account_positions"]:
        lines.append("")
        lines.append(f"ACCOUNT POSITIONS at {d['broker']} ({len(d['account_positions'])})")
        lines.append(f"  {'symbol':<22}{'qty':>10}{'avg cost':>12}  account")
        for p in d["account_positions"]:
            lines.append(
                f"  {p['symbol']:<22}{p['quantity']:>10,.0f}{p['avg_cost']:>12,.2f}  {p['account']}"
            )
    lines.append("")
    lines.append(f"OPEN ORDERS ({len(d['open_orders'])})")
    for o in d["open_orders"]:
        px = o["limit"] if o["limit"] is not None else o["stop"]
        lines.append(
            f"  {o['id']:<12}{o['strategy']:<16}{o['side']:<5}{o['quantity']:>8,.0f} {o['symbol']:<20}"
            f"{o['type']:<8}{'' if px is None else f'{px:,.2f}':>10}  {o['status']}"
            + (f"  [{o['note']}]" if o["note"] else "")
        )
    lines.append("")
    lines.append("STRATEGIES")
    for r in d["strategies"]:
        err = f"  [{r['error']}]" if r["error"] else ""
        lines.append(
            f"  {r['name']:<16}{r['class']:<16}{r['state']:<9}{r['pnl']:>12,.2f}  fills {r['fills']:<5}"
            f"{r['position']}{err}"
        )
    return "\n".join(lines)


def _venue_lines(s: EngineSnapshot) -> list[str]:
    """Connection history, warm-up, reconciliation and alerts: what happened with the venue."""
    out: list[str] = []
    if s.connection_since:
        out.append(
            f"connection {s.connection} since {_clock(s.connection_since)}: {s.connection_message}"
        )
    if len(s.connection_history) > 1:
        for c in s.connection_history:
            out.append(f"  {_clock(c.ts)}  {c.state:<13}{c.message}")
    if s.warmup is not None:
        out.append(f"warm-up: {s.warmup.text}")
    r = s.reconciliation
    if r is not None:
        state = "failed: " + r.error if r.error else ("clean" if r.clean else "differences")
        out.append(
            f"reconciliation: {r.runs} runs, last {_clock(r.last_ts)} ({r.last_trigger}) {state}; "
            f"{r.venue_open_orders} open orders at the venue"
        )
        if r.differences:
            out.append(f"  differences found ({len(r.differences)} most recent):")
            out += [f"  - {t}" for t in r.differences]
    if s.alerts:
        out.append("")
        out.append(f"ALERTS ({len(s.alerts)})")
        for a in s.alerts:
            body = " ".join(a.body.split())
            out.append(f"  {_clock(a.ts)} {a.severity.upper():<8} {a.title}: {body[:300]}")
    return out


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}ms"
