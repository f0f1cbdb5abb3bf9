"""Positions pane: one row per instrument, keyed by its symbol."""

from __future__ import annotations

from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt
from fbterm.tui.table import Column, KeyedTable, Row


class PositionsTable(KeyedTable):
    COLUMNS = (
        Column("symbol", "Symbol", 12),
        Column("qty", "Qty", 7, right=True),
        Column("avg", "Avg cost", 9, right=True, prio=3),
        Column("last", "Last", 9, right=True),
        Column("mv", "Mkt value", 11, right=True, prio=2),
        Column("upnl", "Unrl P&L", 10, right=True),
        Column("rpnl", "Real P&L", 10, right=True, prio=1),
        Column("delta", "Delta", 5, right=True, prio=4),
    )
    DEFAULT_SORT = "symbol"

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        self.set_rows(position_rows(snap))


def position_rows(snap: EngineSnapshot) -> list[Row]:
    rows = []
    for p in snap.positions:
        rows.append(
            Row(
                key=p.symbol,
                cells={
                    "symbol": (fmt.fit(p.symbol, 12), ""),
                    "qty": (
                        fmt.signed_qty(p.quantity),
                        "buy" if p.quantity > 0 else "sell" if p.quantity < 0 else "muted",
                    ),
                    "avg": (fmt.num(p.avg_cost), ""),
                    "last": (fmt.num(p.last), ""),
                    "mv": (fmt.money(p.market_value), ""),
                    "upnl": (fmt.pnl(p.unrealized_pnl), fmt.tone(p.unrealized_pnl)),
                    "rpnl": (fmt.pnl(p.realized_pnl), fmt.tone(p.realized_pnl)),
                    "delta": (fmt.num(p.delta) if p.delta is not None else "", ""),
                },
                sort={
                    "symbol": p.symbol,
                    "qty": p.quantity,
                    "avg": p.avg_cost,
                    "last": p.last or 0.0,
                    "mv": p.market_value,
                    "upnl": p.unrealized_pnl,
                    "rpnl": p.realized_pnl,
                    "delta": p.delta or 0.0,
                },
            )
        )
    return rows
