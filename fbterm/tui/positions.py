"""Positions pane: one row per instrument, keyed by its symbol; bid and ask beside the last
price; option contracts by their short name (``AAPL 26DEC 200C``)."""

from __future__ import annotations

from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt
from fbterm.tui.table import Column, KeyedTable, Row


class PositionsTable(KeyedTable):
    COLUMNS = (
        Column("symbol", "Symbol", 6, prio=0, grow=14, fit=True),
        Column("qty", "Qty", 6, right=True, prio=1, grow=2),
        Column("avg", "Avg cost", 9, right=True, prio=8),
        Column("bid", "Bid", 8, right=True, prio=4, grow=1),
        Column("last", "Last", 8, right=True, prio=2, grow=1),
        Column("ask", "Ask", 8, right=True, prio=4, grow=1),
        Column("mv", "Mkt value", 11, right=True, prio=6),
        Column("upnl", "Unrl P&L", 10, right=True, prio=3),
        Column("rpnl", "Real P&L", 10, right=True, prio=7),
        Column("delta", "Delta", 5, right=True, prio=9),
    )
    DEFAULT_SORT = "symbol"

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        self.set_rows(position_rows(snap))


def position_rows(snap: EngineSnapshot) -> list[Row]:
    rows = []
    for p in snap.positions:
        bid, ask = snap.quotes.get(p.symbol, (None, None))
        rows.append(
            Row(
                key=p.symbol,
                cells={
                    "symbol": (fmt.contract(p.symbol), ""),
                    "qty": (
                        fmt.signed_qty(p.quantity),
                        "buy" if p.quantity > 0 else "sell" if p.quantity < 0 else "muted",
                    ),
                    "avg": (fmt.num(p.avg_cost), ""),
                    "bid": (fmt.num(bid), "muted"),
                    "last": (fmt.num(p.last), ""),
                    "ask": (fmt.num(ask), "muted"),
                    "mv": (fmt.money(p.market_value), ""),
                    "upnl": (fmt.pnl(p.unrealized_pnl), fmt.tone(p.unrealized_pnl)),
                    "rpnl": (fmt.pnl(p.realized_pnl), fmt.tone(p.realized_pnl)),
                    "delta": (fmt.num(p.delta) if p.delta is not None else "", ""),
                },
                sort={
                    "symbol": p.symbol,
                    "qty": p.quantity,
                    "avg": p.avg_cost,
                    "bid": bid or 0.0,
                    "last": p.last or 0.0,
                    "ask": ask or 0.0,
                    "mv": p.market_value,
                    "upnl": p.unrealized_pnl,
                    "rpnl": p.realized_pnl,
                    "delta": p.delta or 0.0,
                },
            )
        )
    return rows
