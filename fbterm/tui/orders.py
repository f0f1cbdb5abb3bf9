"""Open orders pane: keyed by client order id; age counts from the snapshot's clock."""

from __future__ import annotations

from fbterm.model import Order
from fbterm.snapshot import EngineSnapshot
from fbterm.tui import fmt
from fbterm.tui.table import Column, KeyedTable, Row


class OrdersTable(KeyedTable):
    COLUMNS = (
        Column("id", "Id", 10),
        Column("strategy", "Strategy", 12, prio=3),
        Column("symbol", "Symbol", 10),
        Column("side", "Side", 4),
        Column("type", "Type", 7),
        Column("qty", "Qty", 7, right=True),
        Column("filled", "Filled", 7, right=True, prio=1),
        Column("price", "Lmt/Stp", 15, right=True, prio=2),
        Column("status", "Status", 13, prio=4),
        Column("age", "Age", 6, right=True),
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
    return " ".join(parts) or fmt.DASH


def order_rows(snap: EngineSnapshot) -> list[Row]:
    rows = []
    for o in snap.open_orders:
        age = max(snap.ts - o.created_ts, 0.0)
        rows.append(
            Row(
                key=o.client_order_id,
                cells={
                    "id": (fmt.fit(o.client_order_id, 10), ""),
                    "strategy": (fmt.fit(o.strategy_id, 12), ""),
                    "symbol": (fmt.fit(o.symbol, 10), ""),
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
