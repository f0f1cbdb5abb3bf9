"""Futures and forex at IB through the TWS test server: contracts as sent, positions read back
as the right instrument with IB's avgCost divided by the multiplier."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from test_ib_broker import run, server_order, started

from fbterm.execution.brokers.base import FillEvent, OrderStatusEvent
from fbterm.execution.brokers.ib.mapping import from_ib_contract, to_ib_contract
from fbterm.model import Forex, Future, Option, Order, Right, Side, Stock
from fbterm.testing.ibserver import ContractFields, IBTestServer, ServerPosition

pytestmark = pytest.mark.timeout(60)

ES = Future("ES", dt.date(2025, 12, 19))
EURUSD = Forex("EUR", "USD")


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    srv = IBTestServer(market_fill_price=5000.0)
    # IB reports avgCost per contract (price x multiplier) and positions without an exchange.
    es = ContractFields("ES", "FUT", "20251219", multiplier="50", exchange="", local_symbol="ESZ5")
    fx = ContractFields("EUR", "CASH", exchange="", local_symbol="EUR.USD")
    acct = srv.accounts[0]  # the server keeps positions per account
    srv.positions[(acct, *es.key)] = ServerPosition(es, 2.0, 5000.0 * 50, acct)
    srv.positions[(acct, *fx.key)] = ServerPosition(fx, 100_000.0, 1.085, acct)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.mark.parametrize(
    "inst",
    [
        Stock("AAPL"),
        Option("AAPL", Right.PUT, 150.0, dt.date(2025, 1, 17)),
        ES,
        Future("XYZ", dt.date(2025, 12, 19), multiplier=25, exchange="EUREX"),
        EURUSD,
        Forex("USD", "JPY"),
    ],
)
def test_every_asset_class_maps_to_ib_and_back(inst: object) -> None:
    c = to_ib_contract(inst)  # type: ignore[arg-type]
    assert from_ib_contract(c) == inst


def test_continuous_future_maps_to_ibs_contfut() -> None:
    c = to_ib_contract(Future("ES", None))
    assert (c.secType, c.symbol, c.exchange) == ("CONTFUT", "ES", "CME")


def test_futures_and_forex_positions_read_as_their_instruments(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        pos = {p.instrument.key: p for p in h.broker.query_positions()}
        assert set(pos) == {ES.key, EURUSD.key}
        es = pos[ES.key]
        assert es.instrument == ES and es.instrument.multiplier == 50
        assert es.quantity == 2 and es.avg_cost == pytest.approx(5000.0)  # not 250,000
        fx = pos[EURUSD.key]
        assert fx.instrument == EURUSD and fx.quantity == 100_000
        assert fx.avg_cost == pytest.approx(1.085)
        await h.broker.stop()

    run(body)


def test_future_and_forex_orders_reach_the_gateway_as_sent_and_fill(server: IBTestServer) -> None:
    async def body() -> None:
        h = await started(server)
        h.broker.execute_order(Order("F1", ES, Side.SELL, 1, strategy_id="t"))
        h.broker.execute_order(Order("X1", EURUSD, Side.BUY, 25_000, strategy_id="t"))
        await h.until(lambda: len(h.of(OrderStatusEvent)) >= 2, what="two acks")
        f1, x1 = server_order(server, "F1"), server_order(server, "X1")
        c = f1.contract
        assert (c.symbol, c.sec_type, c.last_trade, c.multiplier, c.exchange) == (
            "ES",
            "FUT",
            "20251219",
            "50",
            "CME",
        )
        c = x1.contract
        assert (c.symbol, c.sec_type, c.currency, c.exchange) == ("EUR", "CASH", "USD", "IDEALPRO")
        await h.until(lambda: len(h.of(FillEvent)) == 2, what="two fills")
        fills = {e.fill.client_order_id: e.fill for e in h.of(FillEvent)}
        assert fills["F1"].instrument == ES and fills["X1"].instrument == EURUSD
        await h.until(
            lambda: any(p.instrument == ES and p.quantity == 1 for p in h.broker.query_positions()),
            what="ES position down to 1",
        )
        await h.broker.stop()

    run(body)
