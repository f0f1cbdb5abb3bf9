"""Bad broker replies never lose a fill or a position: overfills, fills after a cancel, fills
for orders we never sent, duplicate executions. The venue here is a scripted one — a real
paper broker never misbehaves, and a misbehaving venue is exactly what is under test."""

from __future__ import annotations

from pathlib import Path

from fbterm.execution.brokers.base import (
    BrokerMessage,
    ConnectionState,
    FillEvent,
    OrderStatusEvent,
)
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import Fill, OrderStatus, OrderType, Side, Signal, Stock


class ScriptedVenue:
    name = "scripted"
    connection_state = ConnectionState.CONNECTED

    def __init__(self) -> None:
        self.handler = None

    def set_event_handler(self, handler) -> None:  # type: ignore[no-untyped-def]
        self.handler = handler

    def execute_order(self, order) -> None:  # type: ignore[no-untyped-def]
        self.handler(
            OrderStatusEvent(order.client_order_id, OrderStatus.SUBMITTED, broker_order_id="9")
        )

    def cancel_order(self, order) -> None:  # type: ignore[no-untyped-def]
        self.handler(OrderStatusEvent(order.client_order_id, OrderStatus.CANCELLED))

    def modify_order(self, order) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("not used")

    def query_open_orders(self):  # type: ignore[no-untyped-def]
        return []

    def query_positions(self):  # type: ignore[no-untyped-def]
        return []

    def query_account_details(self):  # type: ignore[no-untyped-def]
        raise AssertionError("not used")

    def fill(self, oid: str, qty: float, fid: str, side: Side = Side.BUY) -> None:
        self.handler(FillEvent(Fill(fid, oid, Stock("AAPL"), side, qty, 100.0, 1.0, 1.0, "s")))


def setup(tmp_path: Path) -> tuple[OrderManagement, ScriptedVenue, list[BrokerMessage]]:
    venue = ScriptedVenue()
    oms = OrderManagement(venue, Journal(tmp_path / "j.sqlite"))  # type: ignore[arg-type]
    messages: list[BrokerMessage] = []
    oms.subscribe(lambda kind, obj: messages.append(obj) if kind == "message" else None)  # type: ignore[arg-type, func-returns-value]
    return oms, venue, messages


def buy(oms: OrderManagement, qty: float = 10) -> str:
    return oms.create_order(
        Signal("s", Stock("AAPL"), Side.BUY, qty, OrderType.LIMIT, limit_price=100.0)
    ).client_order_id


def reopened(tmp_path: Path) -> OrderManagement:
    return OrderManagement(ScriptedVenue(), Journal(tmp_path / "j.sqlite"))  # type: ignore[arg-type]


def test_an_overfill_is_kept_and_reported(tmp_path: Path) -> None:
    oms, venue, messages = setup(tmp_path)
    oid = buy(oms, 10)
    venue.fill(oid, 6, "X1")
    venue.fill(oid, 7, "X2")  # 3 remained
    assert oms.position("AAPL") == 13
    assert oms.orders[oid].status is OrderStatus.FILLED
    assert any("remaining" in m.message and m.level == "error" for m in messages)
    assert reopened(tmp_path).position("AAPL") == 13


def test_a_fill_after_cancel_and_for_an_unknown_order_are_recorded(tmp_path: Path) -> None:
    oms, venue, messages = setup(tmp_path)
    oid = buy(oms, 10)
    oms.cancel_order(oid)
    venue.fill(oid, 4, "X1")
    venue.fill("NOT-OURS", 2, "X2")
    assert oms.orders[oid].status is OrderStatus.CANCELLED
    assert oms.position("AAPL") == 6
    assert len(messages) == 2
    again = reopened(tmp_path)
    assert again.position("AAPL") == 6 and len(again.fills) == 2


def test_a_repeated_execution_counts_once(tmp_path: Path) -> None:
    oms, venue, _ = setup(tmp_path)
    oid = buy(oms, 10)
    venue.fill(oid, 4, "X1")
    venue.fill(oid, 4, "X1")
    assert oms.position("AAPL") == 4
    assert oms.orders[oid].filled_quantity == 4
