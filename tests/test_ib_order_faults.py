"""IB's order-ending codes and out-of-order messages, through the whole engine: 201 before and
after the acknowledgement, 202, 10147, 10148, 321 (read-only API), a fill before its
openOrder, commission reports before and long after their execution, IB's ids and qualified
contracts in the journal. Each test asserts on the journal, the alerts and the summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ib_support import Rig, ib_config, wait

from fbterm.commands import CancelOrder, NewOrder
from fbterm.model import OrderStatus, Side
from fbterm.testing.ibserver import IBTestServer
from fbterm.testing.ibserver.protocol import REQ_CONTRACT_DATA

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(market_fill_price=100.0) as srv:
        yield srv


@pytest.fixture
def rig(server: IBTestServer, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(server, ib_config(server.port, tmp_path))
    r.start()
    wait(lambda: r.call(lambda: r.e.market_state.prices.get("AAPL")), what="a price")
    try:
        yield r
    finally:
        r.stop()


def send(rig: Rig, qty: float = 10) -> str:
    """A BUY market order on AAPL; its id."""
    res = rig.command(NewOrder(symbol="AAPL", side=Side.BUY, quantity=qty))
    assert res.ok, res.message
    return res.message.split()[2]


def working(rig: Rig, qty: float = 10) -> tuple[str, int]:
    coid = rig.working_limit(qty)
    return coid, int(rig.order(coid).broker_order_id or 0)


def test_201_before_the_acknowledgement_is_rejected_with_ibs_text_and_an_alert(
    rig: Rig, server: IBTestServer
) -> None:
    server.reject_next_order("Insufficient buying power")
    coid = send(rig)
    wait(lambda: rig.order(coid).status is OrderStatus.REJECTED, what="rejected")
    alert = rig.wait_alert("Order rejected")
    assert (
        "IB 201: order rejected by IB" in alert.body and "Insufficient buying power" in alert.body
    )
    order = rig.journal().orders[coid]
    assert order.status is OrderStatus.REJECTED and "Insufficient buying power" in order.reason
    assert order.broker_order_id  # IB's order id, journaled as it left
    assert "Order rejected" in rig.summary()


def test_201_after_the_acknowledgement_rejects_or_after_a_part_fill_cancels_with_an_alert(
    rig: Rig, server: IBTestServer
) -> None:
    first, first_id = working(rig)
    server.reject_order(first_id, "Margin check failed at trigger")
    wait(lambda: rig.order(first).status is OrderStatus.REJECTED, what="rejected after ack")
    assert "IB 201" in rig.wait_alert("Order rejected", body="Margin check").body

    second, second_id = working(rig)
    server.fill_order(second_id, price=99.0, quantity=4)
    wait(lambda: rig.order(second).filled_quantity == 4, what="part fill")
    server.reject_order(second_id, "Position limit")
    wait(lambda: rig.order(second).status is OrderStatus.CANCELLED, what="cancelled with a fill")
    ended = rig.wait_alert("Order ended by the venue", body="Position limit")
    assert "IB 201" in ended.body and "filled 4" in ended.body

    journal = rig.journal()
    assert journal.orders[first].status is OrderStatus.REJECTED
    kept = journal.orders[second]
    assert (kept.status, kept.filled_quantity) == (OrderStatus.CANCELLED, 4.0)
    assert "IB 201" in kept.reason and "Position limit" in kept.reason
    text = rig.summary()
    assert "Order rejected" in text and "Order ended by the venue" in text


def test_202_a_cancel_by_ib_closes_the_order_with_its_reason_and_an_alert(
    rig: Rig, server: IBTestServer
) -> None:
    coid, ib_id = working(rig)
    server.cancel_at_ib(ib_id, "Order held while securities are located")
    wait(lambda: rig.order(coid).status is OrderStatus.CANCELLED, what="cancelled by IB")
    alert = rig.wait_alert("Order ended by the venue")
    assert "IB 202" in alert.body and "securities are located" in alert.body
    order = rig.journal().orders[coid]
    assert order.status is OrderStatus.CANCELLED and "securities are located" in order.reason
    assert "Order ended by the venue" in rig.summary()


def test_10147_cancel_of_an_order_ib_no_longer_has_closes_it_with_ibs_words(
    rig: Rig, server: IBTestServer
) -> None:
    coid, ib_id = working(rig)
    server.forget_order(ib_id)
    assert rig.command(CancelOrder(client_order_id=coid)).ok
    wait(lambda: rig.order(coid).status is OrderStatus.CANCELLED, what="closed after 10147")
    alert = rig.wait_alert("Order ended by the venue")
    assert "IB 10147" in alert.body and "IB no longer has this order" in alert.body
    order = rig.journal().orders[coid]
    assert "IB 10147" in order.reason and "not found" in order.reason
    assert "IB 10147" in rig.summary()


def test_10148_cancel_of_an_order_that_filled_meanwhile_records_the_fill_and_alerts(
    rig: Rig, server: IBTestServer
) -> None:
    coid, ib_id = working(rig)
    server.finish_silently(ib_id, "Filled", price=98.0)  # IB filled it; we were not told
    assert rig.command(CancelOrder(client_order_id=coid)).ok
    wait(lambda: rig.order(coid).status is OrderStatus.FILLED, what="the fill IB had")
    alert = rig.wait_alert("Venue message", body="already filled")
    assert "IB 10148" in alert.body
    (fill,) = rig.journal().fills
    assert (fill.client_order_id, fill.quantity, fill.price, fill.commission) == (
        coid,
        10.0,
        98.0,
        1.0,
    )
    assert rig.journal().orders[coid].status is OrderStatus.FILLED
    assert "already filled at IB" in rig.summary()


def test_321_read_only_api_rejects_clearly_switches_to_read_only_and_refuses_new_orders(
    rig: Rig, server: IBTestServer
) -> None:
    server.set_read_only_api()  # TWS's default: "Read-Only API" ticked
    coid = send(rig)
    wait(lambda: rig.order(coid).status is OrderStatus.REJECTED, what="rejected by 321")
    assert "TWS/Gateway is in read-only API mode" in rig.order(coid).reason
    alert = rig.wait_alert("read-only")
    assert "TWS/Gateway is in read-only API mode" in alert.body
    wait(lambda: rig.connection() == "read-only", what="the header switches")
    snap = rig.e.build_snapshot_threadsafe()
    assert snap.mode == "READ-ONLY" and snap.connection == "read-only"

    again = rig.command(NewOrder(symbol="AAPL", side=Side.BUY, quantity=1))
    assert not again.ok and "read-only API mode" in again.message
    assert len(server.placed) == 0  # the refused one never left

    journal = rig.journal()
    assert all(o.status is OrderStatus.REJECTED for o in journal.orders.values())
    text = rig.summary()
    assert text.startswith("mode READ-ONLY") and "connection read-only" in text
    assert "untick 'Read-Only API'" in text


def test_a_fill_before_its_openorder_keeps_its_commission_and_journals_ibs_ids(
    rig: Rig, server: IBTestServer
) -> None:
    server.fill_before_ack()
    coid = send(rig)
    wait(lambda: rig.order(coid).status is OrderStatus.FILLED, what="filled")
    (fill,) = wait(lambda: [f for f in rig.journal().fills if f.commission], what="commission")
    (e,) = server.executions
    assert (fill.fill_id, fill.commission) == (e.exec_id, 1.0)
    order = rig.journal().orders[coid]
    assert order.broker_order_id == str(e.order.order_id)
    assert order.broker_perm_id == str(e.order.perm_id)
    assert "(comm 1.00)" in " ".join(rig.log_lines()) or fill.commission == 1.0
    assert "fills 1" in rig.summary()


def test_commission_reports_before_and_long_after_their_execution_reach_the_journal(
    rig: Rig, server: IBTestServer
) -> None:
    server.set_commission_timing("before")
    early = send(rig, 10)
    wait(lambda: rig.order(early).status is OrderStatus.FILLED, what="first fill")
    wait(lambda: [f for f in rig.journal().fills if f.commission == 1.0], what="early commission")

    server.set_commission_timing("held")
    late = send(rig, 300)
    wait(lambda: rig.order(late).status is OrderStatus.FILLED, what="second fill")
    (pending,) = [f for f in rig.journal().fills if f.client_order_id == late]
    assert pending.commission == 0.0  # not known yet
    assert server.release_commissions() == 1
    wait(
        lambda: [f for f in rig.journal().fills if f.client_order_id == late and f.commission],
        what="late commission",
    )
    fills = {f.client_order_id: f.commission for f in rig.journal().fills}
    assert fills == {early: 1.0, late: 1.5}
    position = rig.call(lambda: rig.e.oms.positions["AAPL"])
    assert position.commissions == pytest.approx(2.5)


def test_orders_carry_ibs_ids_and_a_qualified_contract_kept_in_the_journal(
    rig: Rig, server: IBTestServer, tmp_path: Path
) -> None:
    coid, _ = working(rig)
    history = rig.history(coid)
    kinds = [
        (kind, o.broker_order_id is not None, o.broker_perm_id is not None)
        for _, kind, o in history
    ]
    # "new" commits before the order leaves; its IB order id follows at once, the perm id
    # with IB's acknowledgement.
    assert kinds[0] == ("new", False, False)
    assert ("PendingSubmit", True, False) in kinds or ("venue-ids", True, False) in kinds
    assert kinds[-1] == ("Submitted", True, True)
    (so,) = server.open_orders()
    assert so.contract.con_id != 0 and so.contract.primary_exchange == "NASDAQ"
    cached = rig.call(lambda: rig.e.journal.venue_contracts("ib"))
    rig.stop()
    assert cached["AAPL"].con_id == so.contract.con_id
    assert cached["AAPL"].primary_exchange == "NASDAQ"
    asked = sum(1 for mid, _ in server.received_messages() if mid == REQ_CONTRACT_DATA)
    rig.start()  # a restart: contracts come from the journal, not from IB
    wait(lambda: rig.connection() == "connected", what="connected")
    wait(lambda: server.subscriptions().get("AAPL"), what="market data")
    assert sum(1 for mid, _ in server.received_messages() if mid == REQ_CONTRACT_DATA) == asked
