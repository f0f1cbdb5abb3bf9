"""Metrics screen: per-strategy performance and the engine's own counters, live."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, Static

from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt
from fbterm.tui.table import Column, KeyedTable, Row


class StrategyMetricsTable(KeyedTable):
    # Numbers take the width they need (fit): a cut number is a wrong number.
    COLUMNS = (
        Column("name", "Strategy", 8, grow=10, fit=True),
        Column("equity", "Equity", 12, right=True, grow=4, fit=True),
        Column("pnl", "P&L total", 11, right=True, grow=4, fit=True),
        Column("dd", "DD", 6, right=True, grow=2, fit=True),
        Column("sharpe", "Sharpe", 6, right=True, grow=6, fit=True),
        Column("win", "Win%", 6, right=True, fit=True),
        Column("trades", "Trades", 6, right=True, prio=2, grow=4, fit=True),
        Column("params", "Params", 16, prio=3, grow=24),
    )
    DEFAULT_SORT = "name"

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        rows = []
        for s in snap.strategies:
            params = " ".join(f"{k}={v}" for k, v in s.params)
            rows.append(
                Row(
                    key=s.name,
                    cells={
                        "name": (s.name, ""),
                        "equity": (fmt.money(s.equity, 0), ""),
                        "pnl": (fmt.pnl(s.pnl_total), fmt.tone(s.pnl_total)),
                        "dd": (fmt.pct(s.drawdown_pct), "warn" if s.drawdown_pct > 5 else ""),
                        "sharpe": (fmt.num(s.sharpe), fmt.tone(s.sharpe)),
                        "win": (fmt.pct(s.win_rate_pct, 0), ""),
                        "trades": (str(s.trades), ""),
                        "params": (params, "muted"),
                    },
                    sort={
                        "name": s.name,
                        "equity": s.equity,
                        "pnl": s.pnl_total,
                        "dd": s.drawdown_pct,
                        "sharpe": s.sharpe or 0.0,
                        "win": s.win_rate_pct or 0.0,
                        "trades": s.trades,
                    },
                )
            )
        self.set_rows(rows)


def engine_stats(snap: EngineSnapshot) -> str:
    acct = snap.account_details
    lines = [
        f"ticks processed {snap.ticks_processed:,}   fills {snap.fills_total:,}   "
        f"open orders {len(snap.open_orders)}   positions {len(snap.positions)}",
        f"submit→ack latency p50 {fmt.num(snap.latency_ms_p50, 1)} ms   p99 {fmt.num(snap.latency_ms_p99, 1)} ms",
    ]
    if acct is not None:
        lines.append(
            f"cash {fmt.money(acct.cash, 0)}   equity {fmt.money(acct.equity, 0)}   "
            f"buying power {fmt.money(acct.buying_power, 0)}   margin {fmt.money(acct.margin_used, 0)}"
        )
    if snap.feeds:
        ages = sorted(snap.feeds, key=lambda f: -f.age)[:6]
        lines.append(
            "oldest feeds: "
            + "  ".join(f"{f.symbol} {fmt.age(f.age)}{'!' if f.stale else ''}" for f in ages)
        )
    return "\n".join(lines)


class MetricsScreen(Screen[None]):
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("escape,q,s", "close", "Back"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="metrics-body"):
            yield Label("Strategy metrics", classes="section-title")
            yield StrategyMetricsTable(id="metrics-table")
            yield Label("Engine", classes="section-title")
            yield Static("", id="engine-stats", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        snap = getattr(self.app, "snapshot", None)
        if snap is not None:
            self.update_snapshot(snap)

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        self.query_one(StrategyMetricsTable).update_snapshot(snap)
        self.query_one("#engine-stats", Static).update(engine_stats(snap))

    def action_close(self) -> None:
        self.dismiss(None)
