"""What-if margin at IB: the adapter's preview against the extended TWS test server, the
margin limit in the risk gate, and the engine sending an operator order only after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_ib_broker import run, started
from test_ib_engine import make_engine, wait

from fbterm import commands as C
from fbterm.config import Config, RiskConfig
from fbterm.engine import Engine
from fbterm.engine.wiring import SourceHooks, ib_source
from fbterm.execution.brokers.ib import BrokerIntegration
from fbterm.journal import Journal
from fbterm.model import MarginImpact, Order, OrderType, Side, Stock
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.testing.ib_extras import ExtendedIBTestServer

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def server() -> Iterator[ExtendedIBTestServer]:
    with ExtendedIBTestServer(market_fill_price=100.0, tick_interval=0.02) as srv:
        yield srv


def test_what_if_reports_margin_change_and_commission_and_places_nothing(
    server: ExtendedIBTestServer,
) -> None:
    async def body() -> None:
        h = await started(server)
        order = Order("W1", Stock("AAPL"), Side.BUY, 100, OrderType.LIMIT, limit_price=100.0)
        impact = await h.broker.what_if(order)
        assert impact == MarginImpact(
            init_margin_change=2_500.0,  # 25% of 10,000
            maint_margin_change=2_000.0,
            init_margin_after=2_500.0,
            maint_margin_after=2_000.0,
            equity_with_loan=1_000_000.0,
            commission=1.0,
        )
        assert "initial margin +2,500" in impact.describe()
        assert server.what_ifs == [("AAPL", "BUY", 100.0)]
        assert server.orders == {}  # a preview places nothing
        await h.broker.stop()

    run(body)


def test_margin_limit_refuses_what_would_take_margin_past_it() -> None:
    risk = PortfolioLevelRisk(RiskConfig(max_margin_pct=30.0))
    ok = MarginImpact(50_000, 40_000, 250_000, 200_000, 1_000_000)
    over = MarginImpact(100_000, 80_000, 350_000, 280_000, 1_000_000)
    assert risk.check_margin(ok) is None
    assert risk.check_margin(over) == (
        "max_margin_pct: initial margin after the order 350,000 is 35.0% of equity with loan "
        "1,000,000 > 30%"
    )
    reducing = MarginImpact(-100_000, -80_000, 350_000, 280_000, 1_000_000)
    assert risk.check_margin(reducing) is None  # freeing margin is always allowed
    assert PortfolioLevelRisk(RiskConfig()).check_margin(over) is None  # 0: no limit


def test_engine_sends_an_operator_order_only_after_the_what_if_passes(
    server: ExtendedIBTestServer, tmp_path: Path, make_config: ConfigBuilder
) -> None:
    cfg: Config = make_config(
        broker={
            "kind": "ib",
            "ib": {"port": server.port, "client_id": 23, "request_timeout": 5.0},
        },
        market={"source": "ib", "symbols": ["AAPL"], "bar_seconds": 0.1, "stale_after": 30.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        risk={
            "max_margin_pct": 10.0,
            "max_order_value": 10_000_000.0,
            "max_position_value": 10_000_000.0,
            "max_gross_exposure": 10_000_000.0,
        },
        strategies=[],
    )
    engine, _broker = make_engine(cfg)
    engine.start(timeout=20)
    try:
        wait(lambda: bool(engine.market_state.prices.get("AAPL")), 20, "first AAPL price")
        # 5,000 shares at ~100 need 125,000 of initial margin: 12.5% > 10%.
        engine.submit(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=5_000))

        def logged(words: str) -> bool:
            return any(words in line.message for line in list(engine.activity.lines))

        wait(lambda: logged("rejected: max_margin_pct"), 20, "the margin refusal")
        assert server.placed == []
        engine.submit(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=100))
        wait(lambda: len(server.placed) == 1, 20, "the small order at IB")
        wait(lambda: logged("initial margin +"), 20, "the preview in the log")
        assert len(server.what_ifs) == 2
    finally:
        engine.stop()


@pytest.mark.parametrize("fallback", [True, False])
def test_no_subscription_falls_back_to_delayed_data_by_config(
    tmp_path: Path, make_config: ConfigBuilder, fallback: bool
) -> None:
    srv = ExtendedIBTestServer(no_subscription={"AAPL"}, tick_interval=0.02).start()
    cfg: Config = make_config(
        broker={
            "kind": "ib",
            "ib": {
                "port": srv.port,
                "client_id": 24,
                "request_timeout": 5.0,
                "delayed_fallback": fallback,
            },
        },
        market={"source": "ib", "symbols": ["AAPL"], "bar_seconds": 0.1, "stale_after": 30.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        strategies=[],
    )
    # The engine's own wiring, as `fbterm run` builds it from the config.
    broker = BrokerIntegration(cfg.broker.ib)
    source, _history = ib_source(cfg, broker, SourceHooks())
    engine = Engine(cfg, broker=broker, source=source, journal=Journal(cfg.journal_path))
    engine.start(timeout=20)
    try:
        if fallback:
            wait(lambda: srv.data_types.get(24) == 3, 20, "delayed data asked for")
            wait(lambda: bool(engine.market_state.prices.get("AAPL")), 20, "delayed AAPL quotes")
            wait(lambda: bool(engine.build_snapshot().market_data_delayed), 10, "DELAYED flag")
        else:
            snap = engine.build_snapshot()
            wait(lambda: any("354" in ln.message for ln in engine.activity.lines), 20, "the 354")
            assert 24 not in srv.data_types and not snap.market_data_delayed
            assert not engine.market_state.prices.get("AAPL")
    finally:
        engine.stop()
        srv.stop()
