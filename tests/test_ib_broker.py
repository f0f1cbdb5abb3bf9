"""BrokerIntegration against the TWS-protocol test server, with the real ib_async client."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from waiting import async_wait_until

from fbterm.config import IBConfig
from fbterm.execution.brokers.base import (
    Broker,
    BrokerError,
    BrokerMessage,
    CommissionEvent,
    ConnectionEvent,
    ConnectionState,
    FillEvent,
    ModifyAckEvent,
    OrderStatusEvent,
)
from fbterm.execution.brokers.ib import BrokerIntegration, describe_ib_error, parse_order_ref
from fbterm.model import Option, Order, OrderStatus, OrderType, Right, Side, Stock, TimeInForce
from fbterm.testing.ibserver import IBTestServer

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "DU1234567"


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(market_fill_price=101.0, positions=[("AAPL", 10, 150.0)]) as srv:
        yield srv


def cfg_for(srv: IBTestServer, **kw: Any) -> IBConfig:
    base = dict(
        host="127.0.0.1",
        port=srv.port,
        client_id=7,
        connect_timeout=5.0,
        request_timeout=5.0,
        reconnect_initial_delay=0.05,
        reconnect_max_delay=0.2,
    )
    base.update(kw)
    return IBConfig(**base)  # type: ignore[arg-type]


class Harness:
    """A started broker plus everything it reported, on one event loop."""

    def __init__(self, broker: BrokerIntegration):
        self.broker = broker
        self.events: list[Any] = []
        broker.set_event_handler(self.events.append)

    def of(self, kind: type, **match: Any) -> list[Any]:
        out = [e for e in self.events if isinstance(e, kind)]
        for k, v in match.items():
            out = [e for e in out if _get(e, k) == v]
        return out

    async def until(
        self, pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition"
    ) -> None:
        try:
            await async_wait_until(pred, what, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; events: {self.events[-15:]}") from None


def _get(e: Any, k: str) -> Any:
    if k.startswith("fill."):
        return getattr(e.fill, k[5:])
    return getattr(e, k)


def run(body: Callable[[], Awaitable[None]], timeout: float = 30.0) -> None:
    async def main() -> None:
        await asyncio.wait_for(body(), timeout)

    asyncio.run(main())


async def started(srv: IBTestServer, **kw: Any) -> Harness:
    """A broker connected and synced (the engine reconciles between the two; alone we just
    end the sync)."""
    min_id = kw.pop("min_order_id", 0)
    throttle = kw.pop("throttle", True)
    h = Harness(BrokerIntegration(cfg_for(srv, **kw), min_order_id=min_id, throttle=throttle))
    await h.broker.start()
    assert h.broker.connection_state is ConnectionState.SYNCING  # no order before a re-sync
    await h.broker.resync()
    return h


def order(coid: str, qty: float = 5, side: Side = Side.BUY, **kw: Any) -> Order:
    return Order(
        coid,
        kw.pop("instrument", Stock("AAPL")),
        side,
        qty,
        strategy_id=kw.pop("strategy_id", "sma"),
        **kw,
    )


def lmt(coid: str, qty: float = 10, price: float = 99.0, **kw: Any) -> Order:
    return order(coid, qty, order_type=OrderType.LIMIT, limit_price=price, **kw)


def server_order(srv: IBTestServer, coid: str) -> Any:
    return next(o for o in srv.orders.values() if o.order_ref.endswith("|" + coid))


# ----------------------------------------------------------------------------- connecting


def test_implements_the_broker_port() -> None:
    assert isinstance(BrokerIntegration(IBConfig()), Broker)
    assert BrokerIntegration(IBConfig()).connection_state is ConnectionState.DISCONNECTED


def test_connect_queries_positions_account_and_open_orders(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        b = h.broker
        assert b.connection_state is ConnectionState.CONNECTED
        assert b.account == ACCOUNT
        await h.until(
            lambda: h.of(ConnectionEvent, state=ConnectionState.CONNECTED), what="connected event"
        )
        (pos,) = b.query_positions()
        assert pos.instrument == Stock("AAPL") and pos.quantity == 10 and pos.avg_cost == 150.0
        assert pos.account == ACCOUNT
        acct = b.query_account_details()
        assert (
            acct.account == ACCOUNT
            and acct.equity == 1_000_000.0
            and acct.buying_power == 4_000_000.0
        )
        assert acct.cash == 1_000_000.0
        assert b.query_open_orders() == []
        # The gateway's farm-status lines arrive as info, not as alarms.
        await h.until(lambda: h.of(BrokerMessage, code=2104), what="2104")
        assert h.of(BrokerMessage, code=2104)[0].level == "info"
        await b.stop()
        assert b.connection_state is ConnectionState.DISCONNECTED

    run(body)


def test_unreachable_gateway_is_one_clear_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there

    async def body() -> None:
        b = BrokerIntegration(IBConfig(port=port, connect_timeout=2.0))
        with pytest.raises(
            ConnectionError, match=rf"not reachable at 127.0.0.1:{port} \(client id 17\)"
        ):
            await b.start()
        assert b.connection_state is ConnectionState.DISCONNECTED

    run(body)


def test_unknown_account_is_refused(server: IBTestServer) -> None:
    async def body() -> None:
        b = BrokerIntegration(cfg_for(server, account="U999"))
        with pytest.raises(
            ConnectionError, match=r"IB account U999 is not managed .*\(managed: DU1234567\)"
        ):
            await b.start()

    run(body)


# --------------------------------------------------------------------------------- orders


def test_market_order_is_acknowledged_filled_and_charged(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        h.broker.execute_order(order("c1", 5))
        await h.until(
            lambda: h.of(CommissionEvent) or any(e.fill.commission for e in h.of(FillEvent)),
            what="commission",
        )
        sent, ack = h.of(OrderStatusEvent, client_order_id="c1")
        # The IB order id is reported as the order leaves, before IB says anything; the
        # acknowledgement adds IB's perm id.
        assert sent.status is OrderStatus.PENDING_SUBMIT and sent.broker_order_id
        assert ack.status is OrderStatus.SUBMITTED and ack.broker_order_id == sent.broker_order_id
        assert ack.perm_id and int(ack.perm_id) > 0
        (fill,) = [e.fill for e in h.of(FillEvent)]
        assert (fill.client_order_id, fill.strategy_id, fill.side, fill.quantity, fill.price) == (
            "c1",
            "sma",
            Side.BUY,
            5.0,
            101.0,
        )
        assert fill.instrument == Stock("AAPL")
        (comm,) = h.of(CommissionEvent)
        assert comm.fill_id == fill.fill_id and comm.commission == 1.0
        # The strategy and our id travel in orderRef; IB's order id is the broker id we reported.
        so = server_order(server, "c1")
        assert parse_order_ref(so.order_ref) == ("sma", "c1")
        assert str(so.order_id) == ack.broker_order_id and so.account == ACCOUNT
        await h.until(lambda: h.broker.query_positions()[0].quantity == 15, what="position update")
        await h.broker.stop()

    run(body)


def test_limit_order_lists_as_open_and_fills_on_command_in_parts(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        h.broker.execute_order(lmt("L1", 10, 99.0, tif=TimeInForce.GTC))
        await h.until(
            lambda: h.of(OrderStatusEvent, client_order_id="L1", status=OrderStatus.SUBMITTED),
            what="ack",
        )
        (bo,) = h.broker.query_open_orders()
        assert (bo.client_order_id, bo.strategy_id, bo.order_type, bo.limit_price, bo.quantity) == (
            "L1",
            "sma",
            OrderType.LIMIT,
            99.0,
            10.0,
        )
        assert bo.status is OrderStatus.SUBMITTED and bo.extra["tif"] == "GTC"
        oid = int(bo.broker_order_id)
        server.fill_order(oid, price=98.9, quantity=4)
        await h.until(lambda: len(h.of(FillEvent)) == 1, what="partial fill")
        assert h.broker.query_open_orders()[0].status is OrderStatus.PARTIALLY_FILLED
        server.fill_order(oid, price=99.0)
        await h.until(lambda: len(h.of(FillEvent)) == 2, what="second fill")
        assert [(e.fill.quantity, e.fill.price) for e in h.of(FillEvent)] == [
            (4.0, 98.9),
            (6.0, 99.0),
        ]
        await h.until(lambda: not h.broker.query_open_orders(), what="order closed")
        await h.broker.stop()

    run(body)


def test_cancel_reports_pending_then_cancelled_and_202_as_info(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        o = lmt("K1")
        h.broker.execute_order(o)
        await h.until(
            lambda: h.of(OrderStatusEvent, client_order_id="K1", status=OrderStatus.SUBMITTED),
            what="ack",
        )
        h.broker.cancel_order(o)
        await h.until(
            lambda: h.of(OrderStatusEvent, status=OrderStatus.CANCELLED), what="cancelled"
        )
        statuses = [e.status for e in h.of(OrderStatusEvent, client_order_id="K1")]
        assert statuses == [
            OrderStatus.PENDING_SUBMIT,
            OrderStatus.SUBMITTED,
            OrderStatus.PENDING_CANCEL,
            OrderStatus.CANCELLED,
        ]
        await h.until(lambda: h.of(BrokerMessage, code=202), what="202")
        msg = h.of(BrokerMessage, code=202)[0]
        assert msg.level == "info" and msg.client_order_id == "K1" and "cancelled" in msg.message
        assert h.broker.query_open_orders() == [] and server.open_orders() == []
        with pytest.raises(BrokerError, match="no longer working"):
            h.broker.cancel_order(o)
        with pytest.raises(BrokerError, match="unknown at IB"):
            h.broker.cancel_order(lmt("nope"))
        await h.broker.stop()

    run(body)


def test_modify_changes_the_working_order_and_is_acknowledged(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        o = lmt("M1", 10, 99.0)
        h.broker.execute_order(o)
        await h.until(
            lambda: h.of(OrderStatusEvent, client_order_id="M1", status=OrderStatus.SUBMITTED),
            what="ack",
        )
        new = o.modified(quantity=20, limit_price=98.5)
        h.broker.modify_order(new)
        await h.until(lambda: h.of(ModifyAckEvent), what="modify ack")
        (ack,) = h.of(ModifyAckEvent)
        assert (ack.client_order_id, ack.quantity, ack.order_type, ack.limit_price) == (
            "M1",
            20,
            OrderType.LIMIT,
            98.5,
        )
        so = server_order(server, "M1")
        assert (so.total_qty, so.lmt_price, so.status) == (20.0, 98.5, "Submitted")
        assert len(server.orders) == 1  # a modification, not a second order
        (bo,) = h.broker.query_open_orders()
        assert bo.quantity == 20 and bo.limit_price == 98.5
        await h.broker.stop()

    run(body)


def test_order_rejected_by_the_server(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        server.reject_next_order("Insufficient buying power")
        h.broker.execute_order(order("R1", 5))
        await h.until(
            lambda: h.of(OrderStatusEvent, client_order_id="R1", status=OrderStatus.REJECTED),
            what="reject",
        )
        (ev,) = h.of(OrderStatusEvent, client_order_id="R1", status=OrderStatus.REJECTED)
        assert ev.status is OrderStatus.REJECTED
        assert "IB 201" in ev.reason and "Insufficient buying power" in ev.reason
        assert not h.of(FillEvent)
        # The next order goes through normally.
        h.broker.execute_order(order("R2", 1))
        await h.until(lambda: h.of(FillEvent), what="next order fill")
        await h.broker.stop()

    run(body)


def test_stop_limit_and_option_orders_reach_the_gateway_as_sent(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        h.broker.execute_order(
            order(
                "S1",
                3,
                Side.SELL,
                order_type=OrderType.STOP_LIMIT,
                limit_price=95.0,
                stop_price=96.0,
            )
        )
        opt = Option("AAPL", Right.CALL, 150.0, dt.date(2025, 1, 17))
        h.broker.execute_order(
            order("O1", 2, instrument=opt, order_type=OrderType.LIMIT, limit_price=3.5)
        )
        await h.until(
            lambda: len(h.of(OrderStatusEvent, status=OrderStatus.SUBMITTED)) == 2, what="two acks"
        )
        s1, o1 = server_order(server, "S1"), server_order(server, "O1")
        assert (s1.action, s1.order_type, s1.lmt_price, s1.aux_price) == (
            "SELL",
            "STP LMT",
            95.0,
            96.0,
        )
        c = o1.contract
        assert (c.symbol, c.sec_type, c.last_trade, c.strike, c.right, c.multiplier) == (
            "AAPL",
            "OPT",
            "20250117",
            150.0,
            "C",
            "100",
        )
        server.fill_order(o1.order_id, price=3.4)
        await h.until(lambda: h.of(FillEvent), what="option fill")
        assert h.of(FillEvent)[0].fill.instrument == opt
        await h.until(
            lambda: [p for p in h.broker.query_positions() if p.instrument == opt], what="opt pos"
        )
        opt_pos = [p for p in h.broker.query_positions() if p.instrument == opt]
        assert opt_pos[0].quantity == 2 and opt_pos[0].avg_cost == pytest.approx(3.4)  # per unit
        await h.broker.stop()

    run(body)


def test_duplicate_client_order_id_is_refused(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        h.broker.execute_order(lmt("D1"))
        with pytest.raises(BrokerError, match="already sent"):
            h.broker.execute_order(lmt("D1"))
        await h.broker.stop()

    run(body)


def test_read_only_mode_refuses_order_commands(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server, read_only=True)
        b = h.broker
        assert b.connection_state is ConnectionState.READ_ONLY
        for call in (b.execute_order, b.cancel_order, b.modify_order):
            with pytest.raises(BrokerError, match="read-only"):
                call(lmt("X1"))
        assert b.query_positions()[0].quantity == 10
        assert b.query_account_details().equity == 1_000_000.0
        await b.stop()

    run(body)
    assert server.placed == []


# -------------------------------------------------------------------- ids, errors, throttle


def test_order_ids_never_go_backwards_after_a_gateway_rollback(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server, min_order_id=500)
        h.broker.execute_order(order("I1", 1))
        await h.until(lambda: h.of(FillEvent), what="fill")
        first = int(h.of(OrderStatusEvent)[0].broker_order_id)
        assert first >= 500
        server.set_next_valid_id(1)  # a restarted gateway forgot our ids
        server.drop_connections()
        await h.until(
            lambda: (
                h.broker.reconnects == 1 and h.broker.connection_state is ConnectionState.SYNCING
            ),
            what="reconnect",
        )
        await h.broker.resync()
        h.broker.execute_order(order("I2", 1))
        await h.until(lambda: len(h.of(FillEvent)) == 2, what="second fill")
        second = int(h.of(OrderStatusEvent, client_order_id="I2")[0].broker_order_id)
        assert second > first and h.broker.highest_order_id == second
        assert not h.of(BrokerMessage, code=103)
        await h.broker.stop()

    run(body)


def test_connectivity_codes_move_the_connection_state(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        server.lose_ib()
        await h.until(lambda: h.broker.connection_state is ConnectionState.LOST, what="1100")
        with pytest.raises(BrokerError, match="not connected"):
            h.broker.execute_order(order("E1"))
        server.restore_ib()
        # 1102: back, but no order until the re-sync from IB's answers is done.
        await h.until(lambda: h.broker.connection_state is ConnectionState.SYNCING, what="1102")
        with pytest.raises(BrokerError, match="re-syncing"):
            h.broker.execute_order(order("E2"))
        await h.broker.resync()
        assert h.broker.connection_state is ConnectionState.CONNECTED
        m1100 = h.of(BrokerMessage, code=1100)[0]
        assert m1100.level == "error" and "lost its connection" in m1100.message
        await h.until(lambda: len(h.of(ConnectionEvent)) == 5, what="the last event")
        states = [e.state for e in h.of(ConnectionEvent)]
        assert states == [
            ConnectionState.SYNCING,
            ConnectionState.CONNECTED,
            ConnectionState.LOST,
            ConnectionState.SYNCING,
            ConnectionState.CONNECTED,
        ]
        assert [e.code for e in h.of(ConnectionEvent)][2:4] == [1100, 1102]
        await h.broker.stop()

    run(body)


@pytest.mark.parametrize(
    ("code", "level", "words"),
    [
        (201, "error", "rejected"),
        (202, "info", "cancelled"),
        (162, "warning", "historical"),
        (366, "warning", "historical"),
        (1101, "warning", "resubscribing"),
        (326, "error", "client id already in use"),
        (10147, "error", "not found"),
        (10148, "warning", "already final"),
        (2106, "info", "farm connected"),
        (2158, "info", "farm connected"),
        (9999, "warning", "IB message"),
    ],
)
def test_error_codes_read_as_one_clear_line(code: int, level: str, words: str) -> None:
    got_level, line = describe_ib_error(code, "IB's own text:")
    assert got_level == level and words in line and line.startswith(f"IB {code}: ")
    assert "(IB's own text)" in line and "\n" not in line


class SendSchedule(deque[float]):
    """The IB client's throttle queue, recording every send time the throttle lets through.

    ib_async's throttle appends its loop-clock time for each message it sends and drops the
    ones older than its interval; this keeps all of them, so the test reads the scheduler's own
    record instead of timing arrivals at the server (which a loaded machine would skew)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []

    def append(self, t: float) -> None:
        self.sent.append(t)
        super().append(t)


def test_throttle_keeps_messages_under_the_configured_rate(server: IBTestServer) -> None:
    schedule = SendSchedule()

    async def body() -> None:
        h = await started(server, max_messages_per_second=5.0)
        h.broker.ib.client._timeQ = schedule
        for i in range(12):
            h.broker.execute_order(lmt(f"T{i}"))
        await h.until(lambda: len(server.placed) == 12, timeout=15, what="12 orders")
        await h.broker.stop()

    run(body)
    sent = schedule.sent
    assert len(sent) >= 12  # the 12 orders, and whatever else the client asked meanwhile
    # The throttle's rule, on its own clock: no second (closed interval) holds more than 5.
    worst = max(sum(1 for u in sent if t <= u <= t + 1.0) for t in sent)
    assert worst == 5


# ---------------------------------------------------------------- reconnect and re-sync


def test_drop_reconnect_resync_reports_missed_fill_once_and_resends_nothing(
    server: IBTestServer,
) -> None:
    async def body() -> None:
        h = await started(server)
        b = h.broker
        b.execute_order(lmt("A", 10, 99.0))
        b.execute_order(order("B", 5))
        await h.until(
            lambda: (
                len(h.of(FillEvent)) == 1
                and h.of(OrderStatusEvent, status=OrderStatus.SUBMITTED, client_order_id="A")
            ),
            what="B filled, A working",
        )
        a_id = int(h.of(OrderStatusEvent, client_order_id="A")[0].broker_order_id)
        assert server.drop_connections(refuse_for=0.4) == 1
        await h.until(
            lambda: b.connection_state is ConnectionState.RECONNECTING, what="reconnecting"
        )
        with pytest.raises(BrokerError, match="not connected"):
            b.execute_order(order("C", 1))
        server.fill_order(a_id, price=98.75)  # filled while we are away
        await h.until(
            lambda: b.connection_state is ConnectionState.SYNCING, timeout=10, what="reconnected"
        )
        book = await b.resync()
        assert b.connection_state is ConnectionState.CONNECTED
        # IB's answer carries both executions, each once, attributed and with its commission.
        by_order = {fe.fill.client_order_id: fe for fe in book.fills}
        assert set(by_order) == {"A", "B"} and len(book.fills) == 2
        missed = by_order["A"].fill
        assert (missed.quantity, missed.price, missed.strategy_id) == (10.0, 98.75, "sma")
        assert missed.commission == 1.0 and by_order["A"].broker_order_id == str(a_id)
        assert book.open_orders == () and book.unsent == frozenset()
        (done,) = [c for c in book.completed_orders if c.client_order_id == "A"]
        assert done.status is OrderStatus.FILLED
        # A round trip to the gateway: every execution it sent before its answer is handled.
        await b.ib.reqCurrentTimeAsync()
        assert len(h.of(FillEvent)) == 1  # the missed fill comes from the book, not twice
        assert b.reconnects == 1
        assert sorted(server.placed) == sorted(set(server.placed)) and len(server.placed) == 2
        await b.stop()

    run(body)


def test_order_lost_in_a_drop_is_not_resent_and_not_at_ib(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        server.drop_on_next_order(refuse_for=0.2)
        h.broker.execute_order(order("LOST", 5))
        await h.until(
            lambda: (
                h.broker.connection_state is ConnectionState.SYNCING and h.broker.reconnects == 1
            ),
            timeout=10,
            what="reconnect",
        )
        book = await h.broker.resync()
        # IB never saw it: neither working nor completed (the engine closes it from this).
        assert all(o.client_order_id != "LOST" for o in (*book.open_orders, *book.completed_orders))
        assert server.placed == [] and not h.of(FillEvent)
        await h.broker.stop()

    run(body)


def test_restart_attributes_fills_of_earlier_session_by_order_ref(server: IBTestServer) -> None:
    async def body() -> None:
        first = await started(server)
        first.broker.execute_order(lmt("P1", 10, 99.0, strategy_id="meanrev"))
        await first.until(
            lambda: first.of(OrderStatusEvent, status=OrderStatus.SUBMITTED), what="ack"
        )
        oid = int(first.of(OrderStatusEvent)[0].broker_order_id)
        await first.broker.stop()
        server.fill_order(oid, price=99.0, quantity=4)  # part-filled while fbterm is down
        second = await started(server, min_order_id=first.broker.highest_order_id + 1)
        book = second.broker.last_book
        assert book is not None
        (fe,) = book.fills
        assert (fe.fill.client_order_id, fe.fill.strategy_id, fe.fill.quantity) == (
            "P1",
            "meanrev",
            4.0,
        )
        # The order still works at IB and is tracked again: we can cancel it by our id.
        (bo,) = book.open_orders
        assert (bo.client_order_id, bo.filled, bo.owner, bo.cancellable) == (
            "P1",
            4.0,
            "fbterm",
            True,
        )
        assert bo.perm_id and fe.perm_id == bo.perm_id
        second.broker.cancel_order(lmt("P1", 10, 99.0, strategy_id="meanrev"))
        await second.until(
            lambda: second.of(OrderStatusEvent, status=OrderStatus.CANCELLED), what="cancel"
        )
        await second.broker.stop()

    run(body)


def test_events_are_delivered_on_the_loop_never_inside_the_call(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        o = lmt("N1")
        h.broker.execute_order(o)
        await h.until(lambda: h.of(OrderStatusEvent, status=OrderStatus.SUBMITTED), what="ack")
        before = len(h.events)
        h.broker.cancel_order(o)
        assert len(h.events) == before  # PENDING_CANCEL is queued, not re-entrant
        await h.until(lambda: len(h.events) > before, what="queued event")
        await h.broker.stop()

    run(body)
