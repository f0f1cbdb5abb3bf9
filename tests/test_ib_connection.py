"""The connection state machine against the gateway's faults: 1100/1101/1102, a gateway down
for seconds, a silent feed. Each test asserts on the journal, the alerts and the headless
summary (see ib_support.py for the rig)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ib_support import Rig, ib_config, wait

from fbterm.commands import NewOrder
from fbterm.model import OrderStatus, OrderType, Side, TradingState
from fbterm.testing.ibserver import IBTestServer

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(market_fill_price=100.0) as srv:
        yield srv


@pytest.fixture
def rig(server: IBTestServer, tmp_path: Path) -> Iterator[Rig]:
    r = Rig(server, ib_config(server.port, tmp_path))
    try:
        yield r
    finally:
        r.stop()


def test_1100_alerts_at_once_reduces_and_1102_resyncs_the_fill_missed_meanwhile(
    rig: Rig, server: IBTestServer
) -> None:
    rig.start()
    coid = rig.working_limit()
    ib_id = int(rig.order(coid).broker_order_id or 0)

    server.lose_ib()  # 1100: the gateway is up, IB is not
    alert = rig.wait_alert("Broker connection lost")
    assert alert.severity.value == "critical" and "IB 1100" in alert.body
    assert "trading is now REDUCING" in alert.body
    assert rig.connection() == "lost"
    assert rig.call(lambda: rig.e.risk.state) is TradingState.REDUCING

    e = server.fill_order(ib_id, price=98.5)  # at IB, while nobody hears of it
    server.restore_ib()  # 1102: data maintained; the engine re-syncs from IB's answers

    wait(lambda: rig.connection() == "connected", what="connected again")
    wait(lambda: rig.order(coid).status is OrderStatus.FILLED, what="the missed fill")
    restored = rig.wait_alert("Broker connection restored")
    assert "trading resumed (ACTIVE)" in restored.body
    assert rig.call(lambda: rig.e.risk.state) is TradingState.ACTIVE
    rig.wait_alert("Reconciliation", body="was not in the journal: recorded")

    journal = rig.journal()
    (fill,) = journal.fills
    assert (fill.fill_id, fill.client_order_id, fill.price, fill.commission) == (
        e.exec_id,
        coid,
        98.5,
        1.0,
    )
    order = journal.orders[coid]
    assert order.status is OrderStatus.FILLED and order.broker_perm_id == str(e.order.perm_id)

    text = rig.summary()
    assert "connection connected since" in text
    for line in ("lost", "re-syncing", "connected"):
        assert any(ln.strip().split()[1:2] == [line] for ln in text.splitlines()), text
    assert "IB 1100" in text and "IB 1102" in text
    assert f"execution {e.exec_id}" in text and "recorded" in text
    assert "CRITICAL Broker connection lost" in text


def test_1101_renews_market_data_and_account_updates_then_resyncs(
    rig: Rig, server: IBTestServer
) -> None:
    rig.start()
    wait(lambda: server.subscriptions().get("AAPL"), what="the AAPL subscription")
    wait(lambda: server.account_subscribers() == 1, what="account updates")

    server.lose_ib()
    rig.wait_alert("Broker connection lost")
    server.restore_ib(data_lost=True)  # 1101: IB dropped every subscription

    wait(lambda: server.subscriptions().get("AAPL"), what="market data asked for again")
    wait(lambda: server.account_subscribers() == 1, what="account updates asked for again")
    wait(lambda: rig.connection() == "connected", what="re-synced")
    before = rig.call(lambda: rig.e.ticks_processed)
    assert server.push_quote("AAPL", 99.9, 100.1, 100.0) == 1
    wait(lambda: rig.call(lambda: rig.e.ticks_processed) > before, what="quotes flowing again")

    text = rig.summary()
    assert "IB 1101" in text and "resubscribing" in text
    assert "Broker connection restored" in text
    assert rig.journal().orders == {}  # nothing to trade, nothing invented


def test_gateway_down_for_seconds_alerts_while_down_and_halts_per_config(
    server: IBTestServer, tmp_path: Path
) -> None:
    cfg = ib_config(
        server.port, tmp_path, ib={"on_connection_lost": "halt", "resume_on_restore": False}
    )
    rig = Rig(server, cfg)
    try:
        rig.start()
        coid = rig.working_limit()
        server.drop_connections(refuse_for=4.0)  # the gateway is gone for a while

        alert = rig.wait_alert("Broker connection lost", timeout=3.0)
        assert server.sessions() == 0, "the alert came while the gateway was still down"
        assert rig.connection() == "reconnecting"
        assert rig.call(lambda: rig.e.risk.state) is TradingState.HALTED
        assert "trading is now HALTED" in alert.body
        refused = rig.command(
            NewOrder(symbol="AAPL", side=Side.BUY, quantity=1, order_type=OrderType.MARKET)
        )
        assert not refused.ok and "HALTED" in refused.message

        wait(lambda: rig.connection() == "connected", timeout=20, what="back after the outage")
        restored = rig.wait_alert("Broker connection restored")
        assert "trading stays HALTED" in restored.body  # resume_on_restore = false
        # The limit order survived the outage, acknowledged and working, not duplicated.
        assert rig.order(coid).status is OrderStatus.SUBMITTED
        assert len(server.open_orders()) == 1

        text = rig.summary()
        assert "trading HALTED (venue connection reconnecting)" in text
        assert "reconnect attempt" in text and "failed" in text
        assert "CRITICAL Broker connection lost" in text and "Broker connection restored" in text
        journal = rig.journal()
        assert journal.orders[coid].status is OrderStatus.SUBMITTED
        assert journal.orders[refused.message.split()[2]].status is OrderStatus.REJECTED
    finally:
        rig.stop()


def test_a_silent_feed_during_market_hours_is_an_alert(
    server: IBTestServer, tmp_path: Path
) -> None:
    # feed_hours "always": the test cannot choose the hour it runs at; NYSE hours are the
    # default and tested in test_engine_executor.py.
    cfg = ib_config(server.port, tmp_path, ib={"feed_hours": "always"}, market={"stale_after": 0.5})
    rig = Rig(server, cfg)
    try:
        rig.start()  # the gateway sends one quote per subscription, then nothing
        alert = rig.wait_alert("Market data stale")
        assert "AAPL: no market data for" in alert.body and "refused" in alert.body
        text = rig.summary()
        assert "WARNING  Market data stale" in text
        assert rig.e.build_snapshot_threadsafe().stale_feeds == ("AAPL",)
    finally:
        rig.stop()
