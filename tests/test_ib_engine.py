"""The whole engine in IB mode: SMA strategy -> risk -> orders -> BrokerIntegration -> TWS-protocol server."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from waiting import wait_until

from fbterm.config import Config
from fbterm.data.ib_source import IBSource
from fbterm.engine import Engine
from fbterm.execution.brokers.base import ConnectionState
from fbterm.execution.brokers.ib import BrokerIntegration, parse_order_ref
from fbterm.journal import Journal
from fbterm.testing.ibserver import IBTestServer

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def server() -> Iterator[IBTestServer]:
    with IBTestServer(tick_interval=0.02) as srv:
        yield srv


@pytest.fixture
def ib_config(server: IBTestServer, tmp_path: Path, make_config: ConfigBuilder) -> Config:
    """IB broker and market data at the test server, quick reconnects, one SMA on AAPL."""
    return make_config(
        broker={
            "kind": "ib",
            "ib": {
                "port": server.port,
                "client_id": 21,
                "connect_timeout": 5.0,
                "request_timeout": 5.0,
                "reconnect_initial_delay": 0.05,
                "reconnect_max_delay": 0.2,
            },
        },
        market={
            "source": "ib",
            "symbols": ["AAPL"],
            "bar_seconds": 0.1,
            "stale_after": 30.0,
        },
        journal={"path": str(tmp_path / "journal.sqlite")},
        strategies=[
            {
                "name": "sma",
                "class": "sma_cross",
                "symbols": ["AAPL"],
                "capital": 100_000,
                "params": {"fast": 2, "slow": 4},
            }
        ],
    )


def wait(pred: Callable[[], bool], timeout: float, what: str) -> None:
    wait_until(pred, what, timeout)


def make_engine(cfg: Config) -> tuple[Engine, BrokerIntegration]:
    broker = BrokerIntegration(cfg.broker.ib)
    engine = Engine(cfg, broker=broker, source=IBSource(broker), journal=Journal(cfg.journal_path))
    return engine, broker


def check_books(engine: Engine, server: IBTestServer) -> None:
    """Every IB execution is exactly one engine fill, attributed to our order and strategy."""
    fills = {f.fill_id: f for f in engine.oms.fills}
    assert len(fills) == len(engine.oms.fills)
    execs = {e.exec_id: e for e in server.executions}
    assert set(fills) == set(execs)
    for eid, e in execs.items():
        f = fills[eid]
        assert parse_order_ref(e.order.order_ref) == ("sma", f.client_order_id)
        assert f.strategy_id == "sma" and f.quantity == e.shares and f.price == e.price
        assert engine.oms.orders[f.client_order_id].broker_order_id == str(e.order.order_id)
    assert len(server.placed) == len(set(server.placed))  # no order id was sent twice


def test_sma_strategy_trades_through_ib(server: IBTestServer, ib_config: Config) -> None:
    engine, broker = make_engine(ib_config)
    engine.start(timeout=20)
    try:
        assert broker.connection_state is ConnectionState.CONNECTED
        wait(lambda: len(server.executions) >= 2, 30, "two SMA trades filled at the server")
        wait(lambda: len(engine.oms.fills) >= 2, 10, "fills back in the engine")
    finally:
        engine.stop()
    check_books(engine, server)
    pos = engine.oms.positions["AAPL"].quantity
    assert pos == pytest.approx(sum(p.quantity for p in server.positions.values()))


def test_gateway_drop_mid_session_reconnects_without_duplicates(
    server: IBTestServer, ib_config: Config
) -> None:
    engine, broker = make_engine(ib_config)
    engine.start(timeout=20)
    try:
        wait(lambda: len(server.executions) >= 1, 30, "a first trade")
        before = len(server.executions)
        server.drop_connections(refuse_for=0.3)
        wait(
            lambda: broker.reconnects == 1 and broker.connection_state is ConnectionState.CONNECTED,
            15,
            "reconnect",
        )
        wait(lambda: len(server.executions) > before + 1, 30, "trading after the reconnect")
        wait(lambda: len(engine.oms.fills) == len(server.executions), 10, "engine caught up")
    finally:
        engine.stop()
    check_books(engine, server)
