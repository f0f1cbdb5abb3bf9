"""Continuous reconciliation with IB's own answers: positions fbterm did not create, other
clients' and manual orders, orders that ended while fbterm was down, another client id after a
restart, an order lost in a drop. Each test asserts on the journal, the alerts and the summary."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ib_support import Rig, ib_config, wait

from fbterm.commands import CancelAll, CancelOrder, FlattenAll, NewOrder
from fbterm.model import OrderStatus, Side
from fbterm.testing.ibserver import IBTestServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(market_fill_price=100.0) as srv:
        yield srv


def test_a_position_fbterm_did_not_create_joins_the_external_book_risk_and_flatten(
    tmp_path: Path,
) -> None:
    with IBTestServer(market_fill_price=100.0, positions=[("AAPL", 50, 150.0)]) as server:
        cfg = ib_config(server.port, tmp_path, risk={"max_position_qty": 60})
        rig = Rig(server, cfg)
        try:
            rig.start()
            alert = rig.wait_alert("Reconciliation")
            assert (
                "AAPL: fbterm held 0, the venue 50: +50 booked to the external book" in alert.body
            )
            assert alert.severity.value == "error"
            (adopted,) = rig.journal().fills
            assert (adopted.strategy_id, adopted.quantity, adopted.price) == ("external", 50, 150)
            text = rig.summary()
            assert "+50 booked to the external book" in text
            (row,) = [ln for ln in text.split("POSITIONS (1)")[1].splitlines()[2:3]]
            assert row.split()[:2] == ["AAPL", "50"]

            # Risk limits count it: 50 held + 20 would pass a 60 share limit otherwise.
            wait(lambda: rig.call(lambda: rig.e.market_state.prices.get("AAPL")), what="a price")
            grow = rig.command(NewOrder(symbol="AAPL", side=Side.BUY, quantity=20))
            assert not grow.ok and "max_position_qty: AAPL 70 > 60" in grow.message
            # Flatten counts it too: one SELL 50 for the external book, filled at IB.
            flat = rig.command(FlattenAll())
            assert flat.ok and "1 closing orders sent" in flat.message
            wait(lambda: rig.call(lambda: rig.e.oms.position("AAPL")) == 0, what="flat")
            assert sum(p.quantity for p in server.positions.values()) == 0
            sold = [f for f in rig.journal().fills if f.side is Side.SELL]
            assert [(f.strategy_id, f.quantity) for f in sold] == [("external", 50.0)]
            rig.stop()

            rig.start()  # the journal remembers the booking: nothing new to reconcile
            wait(lambda: rig.connection() == "connected", what="re-synced")
            assert "0 differences" in " ".join(rig.log_lines())
        finally:
            rig.stop()


def test_other_clients_and_manual_orders_are_shown_read_only_and_their_fills_recorded(
    server: IBTestServer, tmp_path: Path
) -> None:
    other = server.add_foreign_order(5, "AAPL", "BUY", 10, limit_price=90.0)
    manual = server.add_foreign_order(0, "AAPL", "SELL", 5, limit_price=120.0)
    same = server.add_foreign_order(21, "AAPL", "BUY", 3, limit_price=91.0)  # our id, no ref
    same2 = server.add_foreign_order(21, "AAPL", "BUY", 2, limit_price=92.0)
    cfg = ib_config(server.port, tmp_path, ib={"reconcile_interval": 0.3})
    rig = Rig(server, cfg)
    try:
        rig.start()
        ids = {o.perm_id: f"IB-{o.perm_id}" for o in (other, manual, same, same2)}
        wait(lambda: all(i in rig.call(lambda: rig.e.oms.open) for i in ids.values()), what="shown")
        alert = rig.wait_alert("Reconciliation")
        assert (
            alert.severity.value == "warning"
            and alert.body.count("adopted into the external book") == 4
        )
        text = rig.summary()
        assert f"{ids[other.perm_id]}" in text and "[client 5, read-only]" in text
        assert "[TWS (manual), read-only]" in text
        assert "[client 21 (no fbterm reference)]" in text

        refused = rig.command(CancelOrder(client_order_id=ids[other.perm_id]))
        assert not refused.ok and "read-only here" in refused.message
        assert rig.command(CancelOrder(client_order_id=ids[same.perm_id])).ok
        wait(
            lambda: rig.order(ids[same.perm_id]).status is OrderStatus.CANCELLED,
            what="ours to cancel",
        )
        assert server.order(same.perm_id).status == "Cancelled"

        # An order of our client id without fbterm's reference fills: IB tells us at once.
        live = server.fill_foreign_order(same2.perm_id, price=92.0)
        wait(lambda: rig.order(ids[same2.perm_id]).status is OrderStatus.FILLED, what="its fill")
        assert [f.fill_id for f in rig.journal().fills] == [live.exec_id]

        fill = server.fill_foreign_order(other.perm_id, price=90.0)  # client 5's order fills
        wait(
            lambda: rig.order(ids[other.perm_id]).status is OrderStatus.FILLED,
            what="its fill recorded",
        )
        recorded = [f for f in rig.journal().fills if f.fill_id == fill.exec_id]
        assert [(f.client_order_id, f.strategy_id, f.quantity) for f in recorded] == [
            (ids[other.perm_id], "external", 10.0)
        ]
        assert rig.call(lambda: rig.e.oms.position("AAPL", "external")) == 12

        after = rig.command(CancelAll())
        assert after.ok and "0 orders cancelled" in after.message  # only read-only ones left
        assert any("read-only here" in ln for ln in rig.log_lines())
        assert server.order(manual.perm_id).status == "Submitted"
    finally:
        rig.stop()


def test_orders_that_ended_while_fbterm_was_down_are_closed_with_ibs_reason(
    server: IBTestServer, tmp_path: Path
) -> None:
    rig = Rig(server, ib_config(server.port, tmp_path))
    try:
        rig.start()
        cancelled, filled = rig.working_limit(), rig.working_limit()
        ids = {c: int(rig.order(c).broker_order_id or 0) for c in (cancelled, filled)}
        rig.stop()

        server.cancel_at_ib(ids[cancelled], "GTD expired")  # IB's completed orders keep why
        e = server.fill_order(ids[filled], price=98.0)
        rig.start()
        wait(lambda: rig.order(cancelled).status is OrderStatus.CANCELLED, what="closed")
        assert rig.order(filled).status is OrderStatus.FILLED
        alert = rig.wait_alert("Reconciliation")
        assert "the venue ended it: Cancelled by System: GTD expired" in alert.body
        assert f"execution {e.exec_id}" in alert.body

        journal = rig.journal()
        assert "Cancelled by System: GTD expired" in journal.orders[cancelled].reason
        assert [f.fill_id for f in journal.fills] == [e.exec_id]
        text = rig.summary()
        assert "differences found" in text and "GTD expired" in text
        assert "OPEN ORDERS (0)" in text
    finally:
        rig.stop()


def test_after_a_restart_with_another_client_id_its_orders_are_visible_not_lost(
    server: IBTestServer, tmp_path: Path
) -> None:
    rig = Rig(server, ib_config(server.port, tmp_path))
    try:
        rig.start()
        coid = rig.working_limit()
        rig.stop()
        rig.start(ib_config(server.port, tmp_path, ib={"client_id": 22}))
        wait(lambda: rig.connection() == "connected", what="connected as client 22")
        assert rig.order(coid).status is OrderStatus.SUBMITTED  # still working, not closed
        text = rig.summary()
        assert coid in text.split("OPEN ORDERS (1)")[1] and "[fbterm, read-only]" in text
        res = rig.command(CancelAll())
        assert res.ok and "0 orders cancelled" in res.message
        why = [ln for ln in rig.log_lines() if coid in ln and "failed" in ln]
        assert why and "placed with client id 21" in why[0] and "--client-id 21" in why[0]
        assert rig.journal().orders[coid].status is OrderStatus.SUBMITTED
    finally:
        rig.stop()


def test_an_order_lost_in_a_drop_is_closed_after_the_reconnect_not_resent(
    server: IBTestServer, tmp_path: Path
) -> None:
    rig = Rig(server, ib_config(server.port, tmp_path))
    try:
        rig.start()
        wait(lambda: rig.call(lambda: rig.e.market_state.prices.get("AAPL")), what="a price")
        server.drop_on_next_order(refuse_for=0.3)
        res = rig.command(NewOrder(symbol="AAPL", side=Side.BUY, quantity=5))
        coid = res.message.split()[2]
        wait(lambda: rig.order(coid).status is OrderStatus.REJECTED, what="closed by the re-sync")
        assert "not working at the venue" in rig.order(coid).reason
        assert server.placed == [] and server.executions == []
        rig.wait_alert("Broker connection lost")
        rig.wait_alert("Reconciliation", body=coid)
        assert rig.journal().orders[coid].status is OrderStatus.REJECTED
        assert "not among its open or completed orders" in rig.summary()
    finally:
        rig.stop()
