"""Order management's answers to the venue's status reports, and what it does before an order
leaves: risk refusals, the terms it copies from a signal, what listeners hear
(:mod:`fbterm.execution.orders`, on the scripted venue and real journal of
tests/test_orders_edges.py).

Each test names what an operator would lose; they were written against the mutants the rest of
the suite let through (README "Mutation testing")."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_orders_edges import AAPL, T0, Desk, ScriptedVenue
from test_orders_edges import desk as desk  # the fixture

from fbterm.execution.brokers.base import (
    BrokerMessage,
    ConnectionEvent,
    ConnectionState,
    OrderStatusEvent,
)
from fbterm.execution.orders import OrderManagement
from fbterm.model import Order, OrderStatus, OrderType, Side, Signal, TimeInForce

# ------------------------------------------------------------------------ before sending


def test_a_risk_refusal_is_recorded_and_never_sent(tmp_path: Path) -> None:
    d = Desk(tmp_path / "j.sqlite", risk_check=lambda o: "max_order_value: 2,000 > 1,000")
    sent: list[Order] = []
    send = d.venue.execute_order
    d.venue.execute_order = lambda o: (sent.append(o), send(o))  # type: ignore[method-assign, func-returns-value]
    d.now = T0 + 7
    o = d.oms.create_order(Signal("alpha", AAPL, Side.BUY, 20, OrderType.LIMIT, limit_price=100.0))
    assert o.status is OrderStatus.REJECTED and o.reason == "max_order_value: 2,000 > 1,000"
    assert o.updated_ts == T0 + 7 and sent == [] and d.oms.open_orders() == []
    assert [(e, s) for _, e, s in d.oms.monitor_order(o.client_order_id).history] == [
        ("risk-rejected", OrderStatus.REJECTED)
    ]
    kinds = [k for _, k, _ in d.oms.journal.order_history(o.client_order_id)]  # type: ignore[union-attr]
    assert kinds == ["rejected"]
    assert ("order", o) in d.heard


def test_an_order_carries_the_signals_terms_and_the_clocks_time(desk: Desk) -> None:
    desk.now = T0 + 11
    sig = Signal(
        "alpha",
        AAPL,
        Side.SELL,
        7,
        OrderType.STOP_LIMIT,
        limit_price=98.0,
        stop_price=99.0,
        tif=TimeInForce.GTC,
        signal_price=99.5,
        ts=T0,
    )
    o = desk.oms.create_order(sig)
    assert o.client_order_id == "FB-000001"
    assert (o.side, o.quantity, o.order_type, o.limit_price, o.stop_price) == (
        Side.SELL,
        7,
        OrderType.STOP_LIMIT,
        98.0,
        99.0,
    )
    assert (o.tif, o.signal_price, o.strategy_id, o.created_ts) == (
        TimeInForce.GTC,
        99.5,
        "alpha",
        T0 + 11,
    )
    new = desk.oms.journal.order_history(o.client_order_id)[0][2]  # type: ignore[union-attr]
    assert new.updated_ts == T0 + 11 and new.status is OrderStatus.PENDING_SUBMIT


def test_an_order_manager_without_a_journal_answers_monitor_order() -> None:
    venue = ScriptedVenue()
    oms = OrderManagement(venue)  # type: ignore[arg-type]
    o = oms.create_order(Signal("alpha", AAPL, Side.BUY, 1, OrderType.LIMIT, limit_price=1.0))
    assert o.client_order_id == "FB-000001"
    assert [e for _, e, _ in oms.monitor_order(o.client_order_id).history] == ["new", "Submitted"]


# ------------------------------------------------------------------------- status reports


def test_the_first_acknowledgement_records_the_venues_id_time_and_latency(desk: Desk) -> None:
    desk.venue.execute_order = lambda order: None  # type: ignore[method-assign]
    started = time.perf_counter()
    oid = desk.buy(10)
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, "", "42", T0 + 2))
    o = desk.oms.orders[oid]
    assert (o.status, o.broker_order_id, o.submitted_ts) == (OrderStatus.SUBMITTED, "42", T0 + 2)
    [latency] = desk.oms.ack_latencies
    assert 0 <= latency <= time.perf_counter() - started
    # a later echo without an id or a time changes neither
    desk.now = T0 + 9
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, "", None, 0.0))
    o = desk.oms.orders[oid]
    assert (o.broker_order_id, o.submitted_ts) == ("42", T0 + 2)
    assert len(desk.oms.ack_latencies) == 1
    # a venue that renumbers the order is believed
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, "", "43", T0 + 10))
    assert desk.oms.orders[oid].broker_order_id == "43"
    assert not desk.oms._sent_at  # nothing left to measure


def test_an_acknowledgement_without_a_time_is_stamped_by_the_clock(desk: Desk) -> None:
    desk.venue.execute_order = lambda order: None  # type: ignore[method-assign]
    oid = desk.buy(10)
    desk.now = T0 + 5
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, "", "1", 0.0))
    assert desk.oms.orders[oid].submitted_ts == T0 + 5


def test_fill_status_echoes_move_nothing(desk: Desk) -> None:
    oid = desk.buy(10)
    history = len(desk.oms.monitor_order(oid).history)
    for status in (OrderStatus.PARTIALLY_FILLED, OrderStatus.FILLED):
        desk.venue.handler(OrderStatusEvent(oid, status, ts=T0 + 3))
    o = desk.oms.orders[oid]
    assert o.status is OrderStatus.SUBMITTED and o.filled_quantity == 0
    assert len(desk.oms.monitor_order(oid).history) == history


def test_a_working_echo_after_a_partial_fill_keeps_the_partial(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 4, "X1")
    history = len(desk.oms.monitor_order(oid).history)
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, ts=T0 + 6))
    assert desk.oms.orders[oid].status is OrderStatus.PARTIALLY_FILLED
    assert len(desk.oms.monitor_order(oid).history) == history


def test_a_venue_that_keeps_working_a_partial_after_a_cancel_request_is_believed(
    desk: Desk,
) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 4, "X1")
    desk.oms.cancel_order(oid)
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, "too late", ts=T0 + 6))
    o = desk.oms.orders[oid]
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.reason == "too late"


def test_a_repeated_final_status_is_silent_and_a_contradicting_one_is_reported(
    desk: Desk,
) -> None:
    oid = desk.buy(10)
    desk.oms.cancel_order(oid)
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.CANCELLED, ts=T0 + 1))
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.CANCELLED, ts=T0 + 2))  # echo
    assert desk.messages() == []
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.REJECTED, "late", ts=T0 + 3))
    assert desk.oms.orders[oid].status is OrderStatus.CANCELLED
    [msg] = desk.messages()
    assert (msg.code, msg.level, msg.client_order_id, msg.ts) == (0, "info", oid, T0 + 3)
    assert msg.message == f"order {oid} is Cancelled; ignored late Rejected"


# ------------------------------------------------------------------------------ listeners


def test_listeners_hear_every_order_change_venue_messages_and_connection_changes(
    desk: Desk,
) -> None:
    oid = desk.buy(10)
    orders = [obj for kind, obj in desk.heard if kind == "order"]
    assert [o.status for o in orders] == [OrderStatus.PENDING_SUBMIT, OrderStatus.SUBMITTED]
    assert all(isinstance(o, Order) and o.client_order_id == oid for o in orders)
    msg = BrokerMessage(2104, "market data farm connected", None, "info", T0)
    conn = ConnectionEvent(ConnectionState.RECONNECTING, "socket dropped", T0)
    desk.venue.handler(msg)
    desk.venue.handler(conn)
    assert desk.heard[-2:] == [("message", msg), ("connection", conn)]


@pytest.mark.parametrize("prefix", ["FB", "XY"])
def test_order_ids_carry_the_desks_prefix(tmp_path: Path, prefix: str) -> None:
    kw = {} if prefix == "FB" else {"id_prefix": prefix}
    d = Desk(tmp_path / "j.sqlite", **kw)
    assert d.buy(1) == f"{prefix}-000001" and d.buy(1) == f"{prefix}-000002"
