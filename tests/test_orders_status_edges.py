"""Order management's answers to the venue's status reports, and what it does before an order
leaves: risk refusals, the terms it copies from a signal, what listeners hear
(:mod:`fbterm.execution.orders`, on the scripted venue and real journal of
tests/test_orders_edges.py).

Each test names what an operator would lose; they were written against the mutants the rest of
the suite let through (README "Mutation testing")."""

from __future__ import annotations

import datetime as dt
import math
import time
from pathlib import Path

import pytest
from test_orders_edges import AAPL, T0, Desk, ScriptedVenue, visible_orders
from test_orders_edges import desk as desk  # the fixture

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import (
    BrokerMessage,
    ConnectionEvent,
    ConnectionState,
    OrderStatusEvent,
)
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement
from fbterm.journal import Journal
from fbterm.model import (
    IllegalTransition,
    Option,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Right,
    Side,
    Signal,
    TimeInForce,
)

CALL = Option("AAPL", Right.CALL, 120.0, dt.date(2030, 1, 18))

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


# ------------------------------------------------------------------------ across a restart


def test_an_order_restored_before_its_acknowledgement_takes_its_ack_and_fill(
    tmp_path: Path,
) -> None:
    d = Desk(tmp_path / "j.sqlite")
    d.venue.execute_order = lambda order: None  # type: ignore[method-assign]  # no answer yet
    a, b = d.buy(10), d.buy(5)
    d.oms.journal.close()  # type: ignore[union-attr]  # the process dies here
    venue = ScriptedVenue()
    again = OrderManagement(venue, Journal(tmp_path / "j.sqlite"))  # type: ignore[arg-type]
    venue.handler(OrderStatusEvent(a, OrderStatus.SUBMITTED, "", "7", T0 + 30))
    venue.fill(b, 5, "X1")
    assert again.orders[a].status is OrderStatus.SUBMITTED
    assert again.orders[b].status is OrderStatus.FILLED and again.position("AAPL") == 5


def test_an_in_process_venues_order_and_acknowledgement_commit_together(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    broker = PaperBroker(PaperBrokerConfig(), symbols=["AAPL"], clock=lambda: T0)
    oms = OrderManagement(broker, Journal(path), clock=lambda: T0)
    seen: list[set[str]] = []
    oms.subscribe(lambda kind, obj: seen.append(visible_orders(path)) if kind == "order" else None)
    o = oms.create_order(Signal("alpha", AAPL, Side.BUY, 1, OrderType.LIMIT, limit_price=90.0))
    assert o.status is OrderStatus.SUBMITTED
    assert seen == [set(), set()]  # neither is visible alone
    assert visible_orders(path) == {o.client_order_id}
    no_journal = OrderManagement(PaperBroker(PaperBrokerConfig(), symbols=["AAPL"]))
    sig = Signal("alpha", AAPL, Side.BUY, 1, OrderType.LIMIT, limit_price=90.0)
    assert no_journal.create_order(sig).status is OrderStatus.SUBMITTED


def test_a_refused_order_leaves_no_bookkeeping_behind(desk: Desk) -> None:
    desk.venue.refuse_order = "closed"
    desk.buy(10)
    assert not desk.oms._sent_at and desk.oms.open_orders() == []


# --------------------------------------------------------------- the order's own checks


def test_a_status_change_that_also_changes_the_terms_is_validated() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10)
    with pytest.raises(OrderError, match=r"^order O-1: quantity must be > 0, got -5$"):
        o.transition(OrderStatus.SUBMITTED, ts=T0, quantity=-5)
    moved = o.transition(OrderStatus.SUBMITTED, ts=T0, quantity=12)
    assert (moved.status, moved.quantity) == (OrderStatus.SUBMITTED, 12)


def test_an_illegal_move_of_a_working_order_has_no_final_note() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10).transition(OrderStatus.SUBMITTED, ts=T0)
    with pytest.raises(IllegalTransition) as e:
        o.transition(OrderStatus.PENDING_SUBMIT)
    assert str(e.value) == "order O-1: illegal transition Submitted -> PendingSubmit"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Signal("s", AAPL, Side.BUY, 0), "order: quantity must be > 0, got 0"),
        (lambda: Order("O-1", AAPL, Side.BUY, 0), "order O-1: quantity must be > 0, got 0"),
        (
            lambda: Order("O-1", AAPL, Side.BUY, True),
            "order O-1: quantity must be a number, got True",
        ),
        (
            lambda: Order("O-1", AAPL, Side.BUY, 1, OrderType.LIMIT, limit_price=True),
            "order O-1: limit price must be a number, got True",
        ),
        (
            lambda: Order("O-1", AAPL, Side.BUY, 1, OrderType.STOP, stop_price=True),
            "order O-1: stop price must be a number, got True",
        ),
        (
            lambda: Order("O-1", AAPL, Side.BUY, 1, OrderType.LIMIT, limit_price=0.0),
            "order O-1: LMT needs a limit price > 0, got 0.0",
        ),
        (
            lambda: Order("O-1", AAPL, Side.BUY, 1, OrderType.STOP, stop_price=0.0),
            "order O-1: STP needs a stop price > 0, got 0.0",
        ),
        (
            lambda: Order("O-1", AAPL, Side.BUY, 1, OrderType.STOP, stop_price=math.nan),
            "order O-1: STP needs a stop price > 0, got nan",
        ),
        (
            lambda: Order("O-1", CALL, Side.BUY, 1, OrderType.LIMIT, limit_price=2.0).modified(
                quantity=1.5
            ),
            f"order O-1: {CALL.key} trades in whole option contracts; got a quantity of 1.5",
        ),
    ],
)
def test_malformed_orders_are_refused_naming_what_is_wrong(make: object, message: str) -> None:
    with pytest.raises(OrderError) as e:
        make()  # type: ignore[operator]
    assert str(e.value) == message


def test_stops_under_a_dollar_are_orders_like_any_other() -> None:
    o = Order("O-1", AAPL, Side.SELL, 100, OrderType.STOP, stop_price=0.5)
    assert o.stop_price == 0.5
