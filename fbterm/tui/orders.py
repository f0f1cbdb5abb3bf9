"""Open orders pane (the blotter): keyed by client order id; age counts from the snapshot's
clock. Side, symbol, quantity, price and status show at any width; the rest comes as the
terminal grows. Side is a word (BUY/SELL), not only a colour."""

from __future__ import annotations

from fbterm.model import Order
from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt
from fbterm.tui.table import Column, KeyedTable, Row


class OrdersTable(KeyedTable):
    COLUMNS = (
        Column("id", "Id", 9, prio=8),
        Column("strategy", "Strategy", 8, prio=5, grow=6),
        Column("symbol", "Symbol", 6, prio=0, grow=14, fit=True),
        Column("side", "Side", 4, prio=0),
        Column("type", "Type", 7, prio=4),
        Column("qty", "Qty", 7, right=True, prio=1),
        Column("filled", "Filled", 6, right=True, prio=7),
        Column("price", "Lmt/Stp", 8, right=True, prio=2, grow=8, fit=True),
        Column("status", "Status", 9, prio=3, grow=6),
        Column("age", "Age", 6, right=True, prio=6),
    )
    DEFAULT_SORT = "age"

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        # Oldest first reads like a queue; reversed age means newest at the bottom too.
        self.sort_reverse = True
        self.orders: dict[str, Order] = {}

    def update_snapshot(self, snap: EngineSnapshot) -> None:
        self.orders = {o.client_order_id: o for o in snap.open_orders}
        self.set_rows(order_rows(snap))

    def cell_text(self, column: str, text: str, width: int) -> str:
        if column == "status" and len(text) > width:
            return _STATUS_SHORT.get(text, text)
        return text

    @property
    def selected_order(self) -> Order | None:
        key = self.selected_key
        return self.orders.get(key) if key else None


def _price(o: Order) -> str:
    parts = []
    if o.limit_price is not None:
        parts.append(fmt.num(o.limit_price))
    if o.stop_price is not None:
        parts.append("@" + fmt.num(o.stop_price))
    return " ".join(parts) or "MKT"


# Short words for narrow columns: every status stays readable in nine cells.
_STATUS_SHORT = {
    "PendingSubmit": "PendSubmt",
    "PartiallyFilled": "Part.fill",
    "PendingCancel": "PendCancl",
}


def order_rows(snap: EngineSnapshot) -> list[Row]:
    rows = []
    for o in snap.open_orders:
        age = max(snap.ts - o.created_ts, 0.0)
        rows.append(
            Row(
                key=o.client_order_id,
                cells={
                    "id": (o.client_order_id, ""),
                    "strategy": (o.strategy_id, ""),
                    "symbol": (fmt.contract(o.symbol), ""),
                    "side": (o.side.value, "buy" if o.side.value == "BUY" else "sell"),
                    "type": (o.order_type.value, ""),
                    "qty": (fmt.qty(o.quantity), ""),
                    "filled": (
                        fmt.qty(o.filled_quantity),
                        "muted" if o.filled_quantity == 0 else "",
                    ),
                    "price": (_price(o), ""),
                    "status": (o.status.value, "warn" if o.status.value == "PendingCancel" else ""),
                    "age": (fmt.age(age), ""),
                },
                sort={
                    "id": o.client_order_id,
                    "strategy": o.strategy_id,
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "type": o.order_type.value,
                    "qty": o.quantity,
                    "filled": o.filled_quantity,
                    "price": o.limit_price or o.stop_price or 0.0,
                    "status": o.status.value,
                    "age": age,
                },
            )
        )
    return rows
