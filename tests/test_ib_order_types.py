"""Order terms on the wire to IB (the TWS test server records each placeOrder's fields):
bracket children with parentId and OCA, TRAIL by amount or percent, IOC, GTD, outside RTH and
the Adaptive algo."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_ib_broker import run, started

from fbterm.execution.brokers.base import OrderStatusEvent
from fbterm.execution.brokers.ib.orders import gtd_string
from fbterm.execution.orders import bracket_children
from fbterm.model import (
    Order,
    OrderOptions,
    OrderType,
    Side,
    Signal,
    Stock,
    TimeInForce,
)
from fbterm.testing.ibserver import IBTestServer

pytestmark = pytest.mark.timeout(60)

AAPL = Stock("AAPL")
# Field positions in a placeOrder message (ib_async, server version 176).
OTYPE, AUX, TIF, OCA, TRANSMIT, PARENT, OUTSIDE_RTH, GTD, OCA_TYPE = (
    18,
    20,
    21,
    22,
    27,
    28,
    33,
    38,
    46,
)
TRAIL_STOP, TRAIL_PCT = 68, 69


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(market_fill_price=101.0, auto_fill_market=False) as srv:
        yield srv


ORDER_REF = 26


def fields_of(srv: IBTestServer, coid: str) -> list[str]:
    # By the raw message: the test server refuses order types it does not simulate (TRAIL),
    # but what matters here is what left the adapter.
    return next(f for f in srv.place_fields.values() if f[ORDER_REF].endswith("|" + coid))


def test_bracket_children_go_to_ib_as_native_children_in_one_oca_group(
    server: IBTestServer,
) -> None:
    async def body() -> None:
        h = await started(server)
        parent = Order("P1", AAPL, Side.BUY, 10, OrderType.LIMIT, limit_price=99.0)
        sig = Signal("s", AAPL, Side.BUY, 10, take_profit=110.0, stop_loss=95.0)
        ids = iter(["P1-TP", "P1-SL"])
        children = bracket_children(parent, sig, lambda: next(ids), 0.0)
        for o in (parent, *children):
            h.broker.execute_order(o)
        await h.until(lambda: len(h.of(OrderStatusEvent)) >= 3, what="three acks")
        p, tp, sl = (fields_of(server, c) for c in ("P1", "P1-TP", "P1-SL"))
        parent_ib_id = next(
            o.order_id for o in server.orders.values() if o.order_ref.endswith("|P1")
        )
        assert p[PARENT] in ("", "0") and p[OCA] == ""
        assert (tp[OTYPE], tp[PARENT], tp[OCA], tp[OCA_TYPE]) == (
            "LMT",
            str(parent_ib_id),
            "OCA-P1",
            "2",
        )
        assert (sl[OTYPE], sl[AUX], sl[PARENT], sl[OCA]) == (
            "STP",
            "95.0",
            str(parent_ib_id),
            "OCA-P1",
        )
        assert tp[TIF] == sl[TIF] == "GTC"
        await h.broker.stop()

    run(body)


def test_trail_ioc_gtd_outside_rth_and_adaptive_reach_the_gateway(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        sent = [
            Order(
                "T-AMT",
                AAPL,
                Side.SELL,
                5,
                OrderType.TRAIL,
                options=OrderOptions(trail_amount=1.5, outside_rth=True),
            ),
            Order(
                "T-PCT",
                AAPL,
                Side.SELL,
                5,
                OrderType.TRAIL,
                stop_price=97.0,
                tif=TimeInForce.GTD,
                options=OrderOptions(trail_percent=2.0, good_till=1_767_225_600.0),
            ),
            Order("IOC", AAPL, Side.BUY, 5, OrderType.LIMIT, limit_price=99.0, tif=TimeInForce.IOC),
            Order(
                "ADAPT",
                AAPL,
                Side.BUY,
                5,
                OrderType.LIMIT,
                limit_price=99.0,
                options=OrderOptions(algo="Adaptive", algo_priority="Patient"),
            ),
        ]
        for o in sent:
            h.broker.execute_order(o)
        await h.until(lambda: len(h.of(OrderStatusEvent)) >= 4, what="four acks")
        amt, pct, ioc, adapt = (fields_of(server, o.client_order_id) for o in sent)
        assert (amt[OTYPE], amt[AUX], amt[OUTSIDE_RTH]) == ("TRAIL", "1.5", "1")
        assert (pct[OTYPE], pct[TRAIL_PCT], pct[TRAIL_STOP], pct[TIF]) == (
            "TRAIL",
            "2.0",
            "97.0",
            "GTD",
        )
        assert pct[GTD] == gtd_string(1_767_225_600.0) == "20260101-00:00:00"
        assert pct[OUTSIDE_RTH] == "0"
        assert ioc[TIF] == "IOC"
        i = adapt.index("Adaptive")
        assert adapt[i + 1 : i + 4] == ["1", "adaptivePriority", "Patient"]
        assert "Adaptive" not in ioc
        await h.broker.stop()

    run(body)
