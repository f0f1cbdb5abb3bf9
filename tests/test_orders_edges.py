"""Order management at its edges: commission corrections, a refused cancel after a partial
fill, a 1-unit overfill, modifications, ``monitor_order`` after a restart, the
``open_orders(strategy)`` filter, the order queue (:mod:`fbterm.execution.orders`) and the
order state machine (:mod:`fbterm.model.orders`).

The venue is scripted: it does what IB does and a paper venue never does (correct a
commission, refuse a cancel, overfill, echo another strategy id), which is what is under test.
The journal is a real SQLite file. Each test names what an operator would lose; they were
written against the mutants the rest of the suite let through (README "Mutation testing")."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_until

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import (
    BrokerError,
    BrokerMessage,
    CommissionEvent,
    ConnectionState,
    FillEvent,
    ModifyAckEvent,
    OrderStatusEvent,
)
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.orders import OrderManagement, OrderQueue, QueueFull, UnknownOrder
from fbterm.journal import Journal
from fbterm.model import (
    Fill,
    IllegalTransition,
    Order,
    OrderError,
    OrderStatus,
    OrderType,
    Side,
    Signal,
    Stock,
    TimeInForce,
)

T0 = 1_700_000_000.0
AAPL = Stock("AAPL")


class ScriptedVenue:
    """A remote venue the test drives: acknowledges orders, and reports what it is told to."""

    name = "scripted"
    connection_state = ConnectionState.CONNECTED

    def __init__(self) -> None:
        self.handler: Any = None
        self.refuse_cancel: str | None = None
        self.refuse_order: str | None = None
        self.cancels: list[Order] = []
        self.modifies: list[Order] = []

    def set_event_handler(self, handler: Any) -> None:
        self.handler = handler

    def execute_order(self, order: Order) -> None:
        if self.refuse_order:
            raise BrokerError(self.refuse_order)
        self.handler(OrderStatusEvent(order.client_order_id, OrderStatus.SUBMITTED, "", "7", T0))

    def cancel_order(self, order: Order) -> None:
        self.cancels.append(order)
        if self.refuse_cancel:
            raise BrokerError(self.refuse_cancel)

    def modify_order(self, order: Order) -> None:
        self.modifies.append(order)

    def query_open_orders(self) -> list[Any]:
        return []

    def query_positions(self) -> list[Any]:
        return []

    def query_account_details(self) -> Any:
        raise AssertionError("not used")

    def fill(
        self,
        oid: str,
        qty: float,
        fid: str,
        *,
        price: float = 100.0,
        commission: float = 1.0,
        side: Side = Side.BUY,
        sid: str = "alpha",
        ts: float = T0 + 5,
    ) -> None:
        self.handler(FillEvent(Fill(fid, oid, AAPL, side, qty, price, commission, ts, sid)))


class Desk:
    """An OrderManagement on a scripted venue and a real journal, with what it told listeners."""

    def __init__(self, path: Path, **kw: Any) -> None:
        self.path = path
        self.venue = ScriptedVenue()
        self.now = T0
        self.oms = OrderManagement(
            self.venue,  # type: ignore[arg-type]
            Journal(path),
            clock=lambda: self.now,
            **kw,
        )
        self.heard: list[tuple[str, object]] = []
        self.oms.subscribe(lambda kind, obj: self.heard.append((kind, obj)))

    def buy(self, qty: float = 10, sid: str = "alpha", side: Side = Side.BUY) -> str:
        sig = Signal(sid, AAPL, side, qty, OrderType.LIMIT, limit_price=100.0, ts=T0)
        return self.oms.create_order(sig).client_order_id

    def messages(self) -> list[BrokerMessage]:
        return [m for k, m in self.heard if k == "message" and isinstance(m, BrokerMessage)]

    def reopen(self) -> OrderManagement:
        self.oms.journal.close()  # type: ignore[union-attr]
        return OrderManagement(ScriptedVenue(), Journal(self.path))  # type: ignore[arg-type]


@pytest.fixture
def desk(tmp_path: Path) -> Desk:
    return Desk(tmp_path / "journal.sqlite")


# ---------------------------------------------------------------- commission corrections


def test_a_commission_correction_reaches_account_and_strategy_pnl(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 10, "X1", commission=1.0)
    assert desk.oms.positions["AAPL"].realized_pnl == pytest.approx(-1.0)
    desk.venue.handler(CommissionEvent("X1", 1.35))  # IB's final figure, after the fill
    for pos in (
        desk.oms.positions["AAPL"],
        desk.oms.strategy_positions[("alpha", "AAPL")],
        desk.oms.by_strategy["alpha"]["AAPL"],
    ):
        assert pos.realized_pnl == pytest.approx(-1.35) and pos.commissions == pytest.approx(1.35)
    assert desk.oms.fills[0].commission == 1.35
    assert desk.oms.monitor_order(oid).fills[0].commission == 1.35
    kind, fill = desk.heard[-1]
    assert kind == "commission" and isinstance(fill, Fill) and fill.commission == 1.35
    # the journal has the corrected figure: a restart books the same P&L
    again = desk.reopen()
    assert again.fills[0].commission == 1.35
    assert again.positions["AAPL"].realized_pnl == pytest.approx(-1.35)


def test_a_commission_refund_raises_pnl(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 10, "X1", commission=2.0)
    desk.venue.handler(CommissionEvent("X1", 0.5))
    assert desk.oms.positions["AAPL"].realized_pnl == pytest.approx(-0.5)
    assert desk.oms.strategy_positions[("alpha", "AAPL")].commissions == pytest.approx(0.5)


def test_a_commission_for_an_unknown_fill_changes_nothing(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 10, "X1", commission=1.0)
    heard = len(desk.heard)
    desk.venue.handler(CommissionEvent("NOPE", 9.0))
    assert desk.oms.positions["AAPL"].realized_pnl == pytest.approx(-1.0)
    assert len(desk.heard) == heard


def test_commission_corrections_without_a_journal(tmp_path: Path) -> None:
    venue = ScriptedVenue()
    oms = OrderManagement(venue)  # type: ignore[arg-type]
    oid = oms.create_order(
        Signal("alpha", AAPL, Side.BUY, 5, OrderType.LIMIT, limit_price=100.0)
    ).client_order_id
    venue.fill(oid, 5, "X1", commission=1.0)
    venue.handler(CommissionEvent("X1", 3.0))
    assert oms.positions["AAPL"].realized_pnl == pytest.approx(-3.0)
    venue.handler(CommissionEvent("X9", 3.0))  # unknown: ignored
    assert oms.positions["AAPL"].commissions == pytest.approx(3.0)


# --------------------------------------------------------------------- fills and overfills


def test_a_one_unit_overfill_is_kept_booked_and_reported(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 11, "X1")
    assert desk.oms.position("AAPL") == 11 and desk.oms.position("AAPL", "alpha") == 11
    o = desk.oms.orders[oid]
    assert o.status is OrderStatus.FILLED and o.filled_quantity == 11 and o.quantity == 11
    [msg] = desk.messages()
    assert (msg.code, msg.level, msg.client_order_id, msg.ts) == (0, "error", oid, T0 + 5)
    assert o.updated_ts == T0 + 5  # stamped with the fill's time
    assert msg.message == f"order {oid}: venue filled 11 with only 10 remaining; recorded as filled"
    assert desk.reopen().orders[oid].filled_quantity == 11


def test_an_exact_fill_is_no_overfill(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 4, "X1")
    desk.venue.fill(oid, 6, "X2")
    assert desk.oms.orders[oid].status is OrderStatus.FILLED and not desk.messages()


def test_a_fill_is_attributed_to_our_order_whatever_strategy_the_venue_echoes(
    desk: Desk,
) -> None:
    oid = desk.buy(10, sid="alpha")
    desk.venue.fill(oid, 10, "X1", price=101.5, commission=0.7, sid="beta", ts=T0 + 9)
    [f] = desk.oms.fills
    assert f == Fill("X1", oid, AAPL, Side.BUY, 10, 101.5, 0.7, T0 + 9, "alpha")
    assert ("fill", f) in desk.heard  # listeners hear the attributed fill
    own = desk.oms.strategy_positions[("alpha", "AAPL")]
    assert own.strategy_id == "alpha" and desk.oms.by_strategy["alpha"]["AAPL"] == own
    assert desk.oms.orders[oid].updated_ts == T0 + 9
    assert desk.oms.position("AAPL", "alpha") == 10 and desk.oms.position("AAPL", "beta") == 0
    assert desk.reopen().fills[0].strategy_id == "alpha"


def test_a_fill_for_an_unknown_order_is_booked_and_reported(desk: Desk) -> None:
    desk.venue.fill("ZZ-1", 3, "X1", price=99.5, side=Side.SELL, ts=T0 + 3)
    assert desk.oms.position("AAPL") == -3
    [msg] = desk.messages()
    assert (msg.code, msg.level, msg.client_order_id, msg.ts) == (0, "error", "ZZ-1", T0 + 3)
    assert msg.message == (
        "fill X1 for unknown order ZZ-1: SELL 3 AAPL @ 99.5 recorded; positions follow the venue"
    )


def test_a_fill_after_a_cancel_is_booked_and_reported(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.oms.cancel_order(oid)
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.CANCELLED, ts=T0 + 1))
    desk.venue.fill(oid, 2, "X1", price=100.25, ts=T0 + 4)
    assert desk.oms.orders[oid].status is OrderStatus.CANCELLED and desk.oms.position("AAPL") == 2
    [msg] = desk.messages()
    assert (msg.code, msg.level, msg.client_order_id, msg.ts) == (0, "warning", oid, T0 + 4)
    assert msg.message == (
        f"order {oid} is Cancelled but the venue reports a fill of 2 @ 100.25; recorded"
    )


# ---------------------------------------------------------------------------- cancelling


def test_a_refused_cancel_after_a_partial_fill_leaves_the_order_working(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 4, "X1")
    desk.venue.refuse_cancel = "order is being filled"
    desk.now = T0 + 20
    with pytest.raises(BrokerError, match="order is being filled"):
        desk.oms.cancel_order(oid)
    o = desk.oms.orders[oid]
    assert o.status is OrderStatus.PARTIALLY_FILLED and o.filled_quantity == 4
    assert o.reason == "cancel refused: order is being filled" and o.updated_ts == T0 + 20
    assert oid in {x.client_order_id for x in desk.oms.open_orders()}
    history = desk.oms.monitor_order(oid).history
    assert [(e, s) for _, e, s in history][-2:] == [
        ("cancel-request", OrderStatus.PENDING_CANCEL),
        ("PartiallyFilled", OrderStatus.PARTIALLY_FILLED),
    ]
    desk.venue.fill(oid, 6, "X2")  # the rest can still fill
    assert desk.oms.orders[oid].status is OrderStatus.FILLED


def test_a_refused_cancel_of_an_unfilled_order_leaves_it_submitted(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.refuse_cancel = "no"
    with pytest.raises(BrokerError):
        desk.oms.cancel_order(oid)
    assert desk.oms.orders[oid].status is OrderStatus.SUBMITTED
    assert desk.oms.orders[oid].reason == "cancel refused: no"


def test_a_cancel_request_is_journaled_stamped_and_sent_once(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.now = T0 + 30
    pending = desk.oms.cancel_order(oid)
    assert pending.status is OrderStatus.PENDING_CANCEL and pending.updated_ts == T0 + 30
    assert [o.client_order_id for o in desk.venue.cancels] == [oid]
    assert desk.oms.cancel_order(oid) is pending  # already asked: not sent again
    assert len(desk.venue.cancels) == 1
    assert desk.oms.monitor_order(oid).history[-1] == (
        T0 + 30,
        "cancel-request",
        OrderStatus.PENDING_CANCEL,
    )


# ---------------------------------------------------------------------------- modifying


def test_a_modification_is_risk_checked_sent_and_applied_on_acknowledgement(
    tmp_path: Path,
) -> None:
    seen: list[Order] = []

    def risk(o: Order) -> str | None:
        seen.append(o)
        return "max_order_value: 30,000 > 20,000" if o.quantity > 200 else None

    d = Desk(tmp_path / "j.sqlite", risk_check=risk)
    oid = d.buy(10)
    d.now = T0 + 40
    with pytest.raises(OrderError, match=rf"^order {oid}: modification rejected: max_order_value"):
        d.oms.modify_order(oid, quantity=300)
    assert not d.venue.modifies
    d.oms.modify_order(
        oid, quantity=20, order_type=OrderType.STOP_LIMIT, limit_price=100.25, stop_price=99.0
    )
    [sent] = d.venue.modifies
    assert (sent.quantity, sent.order_type, sent.limit_price, sent.stop_price) == (
        20,
        OrderType.STOP_LIMIT,
        100.25,
        99.0,
    )
    assert sent.updated_ts == T0 + 40 and seen[-1] == sent
    assert d.oms.orders[oid].quantity == 10  # terms change on the venue's word, not before
    d.venue.handler(ModifyAckEvent(oid, 20, OrderType.STOP_LIMIT, 100.5, 99.5, T0 + 41))
    o = d.oms.orders[oid]
    assert (o.quantity, o.order_type, o.limit_price, o.stop_price) == (
        20,
        OrderType.STOP_LIMIT,
        100.5,
        99.5,
    )
    assert o.updated_ts == T0 + 41 and o.revision == 1
    assert [e for _, e, _ in d.oms.monitor_order(oid).history] == ["new", "Submitted", "modified"]
    assert d.oms.monitor_order(oid).history[-1] == (T0 + 41, "modified", OrderStatus.SUBMITTED)
    kinds = [k for _, k, _ in d.oms.journal.order_history(oid)]  # type: ignore[union-attr]
    assert kinds == ["new", "Submitted", "modify-request", "modified"]


def test_a_modify_acknowledgement_without_a_time_is_stamped_by_the_clock(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.now = T0 + 50
    desk.venue.handler(ModifyAckEvent(oid, 12, OrderType.LIMIT, 100.0, None))
    assert desk.oms.orders[oid].updated_ts == T0 + 50 and desk.oms.orders[oid].quantity == 12


def test_a_late_modify_acknowledgement_for_a_final_order_is_ignored(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 10, "X1")
    desk.venue.handler(ModifyAckEvent(oid, 50, OrderType.LIMIT, 90.0, None, T0 + 60))
    desk.venue.handler(ModifyAckEvent("NOPE", 50, OrderType.LIMIT, 90.0, None, T0 + 60))
    assert desk.oms.orders[oid].quantity == 10 and desk.oms.orders[oid].limit_price == 100.0


# --------------------------------------------------------------- monitoring and queries


def test_monitor_order_after_a_restart_shows_the_orders_fills_and_history(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 4, "X1", ts=T0 + 5)
    before = desk.oms.monitor_order(oid)
    again = desk.reopen()
    report = again.monitor_order(oid)
    assert report.order == before.order and report.status is OrderStatus.PARTIALLY_FILLED
    assert [f.fill_id for f in report.fills] == ["X1"]
    assert [(e, s) for _, e, s in report.history] == [
        ("new", OrderStatus.PENDING_SUBMIT),
        ("Submitted", OrderStatus.SUBMITTED),
        ("fill", OrderStatus.PARTIALLY_FILLED),
    ]
    assert report.history[-1][0] == report.order.updated_ts


def test_monitor_order_reports_this_orders_fills_only(desk: Desk) -> None:
    a, b = desk.buy(10), desk.buy(5)
    desk.venue.fill(a, 10, "X1")
    desk.venue.fill(b, 2, "X2")
    ra = desk.oms.monitor_order(a)
    assert ra.order.client_order_id == a and [f.fill_id for f in ra.fills] == ["X1"]
    assert [e for _, e, _ in ra.history] == ["new", "Submitted", "fill"]
    assert [f.fill_id for f in desk.oms.monitor_order(b).fills] == ["X2"]
    with pytest.raises(UnknownOrder) as e:
        desk.oms.monitor_order("NOPE")
    assert str(e.value) == "unknown order 'NOPE'"


def test_open_orders_filters_by_strategy(desk: Desk) -> None:
    a1, a2, b1 = desk.buy(10, "alpha"), desk.buy(5, "alpha"), desk.buy(7, "beta")
    desk.venue.fill(a2, 5, "X1")  # filled: no longer open
    assert [o.client_order_id for o in desk.oms.open_orders("alpha")] == [a1]
    assert [o.client_order_id for o in desk.oms.open_orders("beta")] == [b1]
    assert desk.oms.open_orders("gamma") == []
    assert {o.client_order_id for o in desk.oms.open_orders()} == {a1, b1}


def test_positions_by_account_and_by_strategy(desk: Desk) -> None:
    desk.venue.fill(desk.buy(10, "alpha"), 10, "X1")
    desk.venue.fill(desk.buy(4, "beta", Side.SELL), 4, "X2", side=Side.SELL, sid="beta")
    assert desk.oms.position("AAPL") == 6
    assert desk.oms.position("AAPL", "alpha") == 10 and desk.oms.position("AAPL", "beta") == -4
    assert desk.oms.position("MSFT") == 0 and desk.oms.position("AAPL", "gamma") == 0


def test_close_locally_needs_a_final_status_and_a_known_order(desk: Desk) -> None:
    oid = desk.buy(10)
    with pytest.raises(ValueError, match=r"^close_locally needs a final status, got Submitted$"):
        desk.oms.close_locally(oid, OrderStatus.SUBMITTED, "x")
    with pytest.raises(UnknownOrder):
        desk.oms.close_locally("NOPE", OrderStatus.CANCELLED, "x")
    o = desk.oms.close_locally(oid, OrderStatus.CANCELLED, "expired: DAY order")
    assert o.status is OrderStatus.CANCELLED and o.reason == "expired: DAY order"
    assert desk.oms.open_orders() == []
    assert desk.reopen().orders[oid].status is OrderStatus.CANCELLED


def test_an_order_the_venue_refuses_at_once_is_rejected_with_its_reason(desk: Desk) -> None:
    desk.venue.refuse_order = "market closed"
    oid = desk.buy(10)
    o = desk.oms.orders[oid]
    assert o.status is OrderStatus.REJECTED and o.reason == "broker: market closed"
    assert desk.oms.open_orders() == []


# --------------------------------------------------------------------------- the queue


def test_an_order_queue_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match=r"^OrderQueue maxsize must be > 0, got 0$"):
        OrderQueue(0)
    assert OrderQueue(1).maxsize == 1


def test_dequeue_order_and_batch_take_the_oldest_first() -> None:
    q = OrderQueue(10)
    assert q.dequeue_order() is None and q.dequeue_batch() == []
    for i in range(1, 6):
        q.enqueue_order(Signal("s", AAPL, Side.BUY, i))
    assert q.dequeue_order().quantity == 1  # type: ignore[union-attr]
    assert [s.quantity for s in q.dequeue_batch(2)] == [2, 3]
    assert len(q) == 2
    assert [s.quantity for s in q.dequeue_batch()] == [4, 5]


def test_a_full_queue_names_what_was_not_queued() -> None:
    q = OrderQueue(1)
    q.enqueue_order(Signal("s", AAPL, Side.BUY, 1))
    with pytest.raises(QueueFull) as e:
        q.enqueue_order(Signal("beta", AAPL, Side.SELL, 25))
    assert str(e.value) == "order queue full (1 waiting): SELL 25 AAPL for beta was not queued"


def test_submit_all_sends_a_remote_venues_orders_one_commit_each(desk: Desk) -> None:
    q = OrderQueue(10)
    assert q.submit_all(desk.oms) == []
    for i in (1, 2, 3):
        q.enqueue_order(Signal("alpha", AAPL, Side.BUY, i, OrderType.LIMIT, limit_price=100.0))
    sent = q.submit_all(desk.oms, max_items=2)
    assert [o.quantity for o in sent] == [1, 2] and len(q) == 1
    assert all(o.status is OrderStatus.SUBMITTED for o in sent)
    no_journal = OrderManagement(ScriptedVenue())  # type: ignore[arg-type]
    no_journal.broker.set_event_handler(no_journal.on_broker_event)
    assert [o.quantity for o in q.submit_all(no_journal)] == [3]


# -------------------------------------------------------------------- the state machine


def test_an_illegal_transition_names_the_order_and_both_states() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10)
    filled = o.with_fill(10, 100.0, ts=T0)
    with pytest.raises(IllegalTransition) as e:
        filled.transition(OrderStatus.CANCELLED)
    assert (e.value.order_id, e.value.current, e.value.requested) == (
        "O-1",
        OrderStatus.FILLED,
        OrderStatus.CANCELLED,
    )
    assert (
        str(e.value) == "order O-1: illegal transition Filled -> Cancelled (order is already final)"
    )
    plain = IllegalTransition("O-2", OrderStatus.SUBMITTED, OrderStatus.PENDING_SUBMIT)
    assert str(plain) == "order O-2: illegal transition Submitted -> PendingSubmit"


def test_a_final_order_cannot_be_modified() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10, OrderType.LIMIT, limit_price=100.0)
    cancelled = o.transition(OrderStatus.CANCELLED, ts=T0)
    with pytest.raises(IllegalTransition) as e:
        cancelled.modified(quantity=5)
    assert str(e.value) == (
        "order O-1: illegal transition Cancelled -> Cancelled (only a working order can be modified)"
    )
    with pytest.raises(IllegalTransition):
        o.transition(OrderStatus.PENDING_CANCEL, ts=T0).modified(quantity=5)


def test_a_modified_quantity_must_exceed_what_has_filled_even_for_one_unit() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10, OrderType.LIMIT, limit_price=100.0).with_fill(
        1, 100.0, ts=T0
    )
    with pytest.raises(OrderError, match=r"^order O-1: new quantity 1 must exceed filled 1$"):
        o.modified(quantity=1)
    assert o.modified(quantity=2).quantity == 2


def test_modified_keeps_the_terms_not_given_and_validates_the_new_ones() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10, OrderType.STOP_LIMIT, 101.0, 100.0, triggered=True)
    m = o.modified(limit_price=102.0, ts=T0 + 1)
    assert (m.limit_price, m.stop_price, m.quantity, m.updated_ts) == (102.0, 100.0, 10, T0 + 1)
    assert m.triggered and m.revision == 1
    as_limit = o.modified(order_type=OrderType.LIMIT, ts=T0 + 2)
    assert as_limit.stop_price is None and not as_limit.triggered
    untriggered = dataclasses.replace(o, triggered=False)
    assert not untriggered.modified(stop_price=99.0, ts=T0).triggered
    with pytest.raises(OrderError, match=r"^order O-1: LMT needs a limit price > 0"):
        Order("O-1", AAPL, Side.BUY, 10).modified(order_type=OrderType.LIMIT)
    unstamped = o.modified(quantity=12)
    assert unstamped.updated_ts > T0


def visible_orders(path: Path) -> set[str]:
    """What another reader of the journal file sees: committed order events only."""
    con = sqlite3.connect(path)
    try:
        return {oid for (oid,) in con.execute("SELECT DISTINCT order_id FROM order_events")}
    finally:
        con.close()


def test_a_remote_venue_never_holds_an_order_the_journal_has_not_committed(desk: Desk) -> None:
    seen_at_send: list[bool] = []
    send = desk.venue.execute_order

    def execute_order(order: Order) -> None:
        seen_at_send.append(order.client_order_id in visible_orders(desk.path))
        send(order)

    desk.venue.execute_order = execute_order  # type: ignore[method-assign]
    q = OrderQueue(10)
    for i in (1, 2, 3):
        q.enqueue_order(Signal("alpha", AAPL, Side.BUY, i, OrderType.LIMIT, limit_price=100.0))
    assert len(q.submit_all(desk.oms)) == 3
    assert seen_at_send == [True, True, True]


def test_an_in_process_venues_batch_commits_as_one(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite"
    broker = PaperBroker(PaperBrokerConfig(), symbols=["AAPL"], clock=lambda: T0)
    oms = OrderManagement(broker, Journal(path), clock=lambda: T0)
    seen: list[set[str]] = []
    oms.subscribe(lambda kind, obj: seen.append(visible_orders(path)) if kind == "order" else None)
    q = OrderQueue(10)
    for i in (1, 2, 3):
        q.enqueue_order(Signal("alpha", AAPL, Side.BUY, i, OrderType.LIMIT, limit_price=100.0))
    sent = q.submit_all(oms)
    assert seen and all(s == set() for s in seen)  # nothing visible until the batch is done
    assert visible_orders(path) == {o.client_order_id for o in sent}


def test_submit_all_takes_at_most_1000_by_default() -> None:
    venue = ScriptedVenue()
    oms = OrderManagement(venue)  # type: ignore[arg-type]
    q = OrderQueue(2000)
    for _ in range(1001):
        q.enqueue_order(Signal("alpha", AAPL, Side.BUY, 1, OrderType.LIMIT, limit_price=100.0))
    assert len(q.submit_all(oms)) == 1000 and len(q) == 1


def test_a_commission_correction_changes_that_fill_only(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 4, "X1", commission=1.0)
    desk.venue.fill(oid, 6, "X2", commission=1.0)
    desk.venue.handler(CommissionEvent("X2", 2.5))
    assert [(f.fill_id, f.commission) for f in desk.oms.monitor_order(oid).fills] == [
        ("X1", 1.0),
        ("X2", 2.5),
    ]


def test_nine_of_ten_is_a_partial_fill_stamped_with_the_fills_time() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10, OrderType.LIMIT, limit_price=100.0)
    part = o.with_fill(9, 100.0, ts=T0 + 3)
    assert part.status is OrderStatus.PARTIALLY_FILLED and part.updated_ts == T0 + 3
    done = part.with_fill(1, 101.0, ts=T0 + 4)
    assert done.status is OrderStatus.FILLED and done.avg_fill_price == pytest.approx(100.1)


def test_a_modification_keeps_quantities_in_whole_shares() -> None:
    o = Order("O-1", AAPL, Side.BUY, 10, OrderType.LIMIT, limit_price=100.0)
    with pytest.raises(OrderError, match=r"AAPL trades in whole shares; got a quantity of 2\.5$"):
        o.modified(quantity=2.5)


def test_orders_read_back_from_an_older_journal_get_the_defaults() -> None:
    minimal = {"id": "O-1", "instrument": "AAPL", "side": "BUY", "qty": 10, "type": "MKT"}
    o = Order.from_dict(minimal)
    assert (o.tif, o.strategy_id, o.triggered, o.status) == (
        TimeInForce.DAY,
        "manual",
        False,
        OrderStatus.PENDING_SUBMIT,
    )
    assert o == Order("O-1", AAPL, Side.BUY, 10, created_ts=0.0)  # nothing filled, no history
    full = Order(
        "O-2",
        AAPL,
        Side.SELL,
        5,
        OrderType.STOP,
        stop_price=99.0,
        tif=TimeInForce.GTC,
        strategy_id="alpha",
        triggered=True,
    )
    assert Order.from_dict(full.to_dict()) == full


def test_without_a_journal_a_repeated_execution_still_counts_once() -> None:
    venue = ScriptedVenue()
    oms = OrderManagement(venue)  # type: ignore[arg-type]
    oid = oms.create_order(
        Signal("alpha", AAPL, Side.BUY, 10, OrderType.LIMIT, limit_price=100.0)
    ).client_order_id
    venue.fill(oid, 4, "X1")
    venue.fill(oid, 4, "X1")  # re-sent after a reconnect
    assert oms.position("AAPL") == 4 and len(oms.fills) == 1


def test_a_fill_before_any_acknowledgement_measures_the_acknowledgement(desk: Desk) -> None:
    desk.venue.execute_order = lambda order: None  # type: ignore[method-assign]  # no ack
    started = time.perf_counter()
    oid = desk.buy(10)
    assert list(desk.oms.ack_latencies) == []
    desk.venue.fill(oid, 10, "X1")
    [latency] = desk.oms.ack_latencies
    assert 0 <= latency <= time.perf_counter() - started  # measured from this order's send
    desk.venue.handler(OrderStatusEvent(oid, OrderStatus.SUBMITTED, ts=T0 + 1))
    assert len(desk.oms.ack_latencies) == 1  # measured once


def test_a_status_for_an_unknown_order_is_reported(desk: Desk) -> None:
    desk.venue.handler(OrderStatusEvent("ZZ-9", OrderStatus.CANCELLED, ts=T0 + 2))
    [msg] = desk.messages()
    assert (msg.code, msg.level, msg.client_order_id, msg.ts) == (0, "warning", "ZZ-9", T0 + 2)
    assert msg.message == "status for unknown order ZZ-9: Cancelled"


def test_a_restart_keeps_commission_corrections_working(desk: Desk) -> None:
    oid = desk.buy(10)
    desk.venue.fill(oid, 10, "X1", commission=1.0)
    path = desk.path
    desk.oms.journal.close()  # type: ignore[union-attr]
    venue = ScriptedVenue()
    again = OrderManagement(venue, Journal(path))  # type: ignore[arg-type]
    venue.handler(CommissionEvent("X1", 4.0))
    assert again.positions["AAPL"].realized_pnl == pytest.approx(-4.0)
    assert again.monitor_order(oid).fills[0].commission == 4.0


@pytest.mark.parametrize(
    ("journaled", "next_id"),
    [
        ([], "FB-000001"),
        (["FB-000001", "FB-000002"], "FB-000003"),
        (["IB-000123", "FB-abc", "FB-000007"], "FB-000008"),  # other prefixes and names
    ],
)
def test_order_ids_continue_after_a_restart(
    tmp_path: Path, journaled: list[str], next_id: str
) -> None:
    j = Journal(tmp_path / "journal.sqlite")
    for oid in journaled:
        j.record_order("new", Order(oid, AAPL, Side.BUY, 1))
    oms = OrderManagement(ScriptedVenue(), j)  # type: ignore[arg-type]
    assert oms.next_id() == next_id


def test_the_order_queue_defaults() -> None:
    q = OrderQueue()
    assert q.maxsize == 10_000
    for _ in range(1001):
        q.enqueue_order(Signal("s", AAPL, Side.BUY, 1))
    assert len(q.dequeue_batch()) == 1000 and len(q) == 1


@pytest.mark.timeout(30)
def test_a_blocking_dequeue_waits_for_the_next_order() -> None:
    q = OrderQueue(5)
    got: list[Signal | None] = []
    t = threading.Thread(target=lambda: got.append(q.dequeue_order(block=True, timeout=20)))
    t.start()
    # the consumer is waiting on the queue (its condition has a waiter): now produce
    wait_until(lambda: len(q._q.not_empty._waiters) == 1, "the consumer to wait")  # type: ignore[attr-defined]
    q.enqueue_order(Signal("s", AAPL, Side.BUY, 3))
    t.join(20)
    assert not t.is_alive() and got[0] is not None and got[0].quantity == 3
    # with nothing coming, a blocking dequeue gives up at its timeout and says so with None
    assert q.dequeue_order(block=True, timeout=0.01) is None


@pytest.mark.timeout(30)
def test_a_blocking_enqueue_waits_for_room() -> None:
    q = OrderQueue(1)
    q.enqueue_order(Signal("s", AAPL, Side.BUY, 1))
    done: list[bool] = []

    def produce() -> None:
        q.enqueue_order(Signal("s", AAPL, Side.BUY, 2), block=True, timeout=20)
        done.append(True)

    t = threading.Thread(target=produce)
    t.start()
    wait_until(lambda: len(q._q.not_full._waiters) == 1, "the producer to wait")  # type: ignore[attr-defined]
    assert q.dequeue_order().quantity == 1  # type: ignore[union-attr]
    t.join(20)
    assert done == [True] and q.dequeue_order().quantity == 2  # type: ignore[union-attr]
