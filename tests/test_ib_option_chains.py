"""Live option chains from IB (reqSecDefOptParams, qualified contracts, quotes, our greeks
when IB sends none), cached; the covered call trades both legs against the TWS test server."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_ib_broker import run, started
from test_ib_engine import wait

from fbterm.config import Config
from fbterm.data.ib_chains import ChainError, IBOptionChains
from fbterm.engine import Engine
from fbterm.engine.wiring import SourceHooks, ib_source
from fbterm.execution.brokers.ib import BrokerIntegration
from fbterm.journal import Journal
from fbterm.model import Right
from fbterm.pricing import bs_delta, years_to_expiry
from fbterm.testing.ib_extras import ExtendedIBTestServer

if TYPE_CHECKING:
    from conftest import ConfigBuilder

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def server() -> Iterator[ExtendedIBTestServer]:
    with ExtendedIBTestServer(tick_interval=0.02, option_vol=0.3) as srv:
        yield srv


def test_chain_lists_qualified_quoted_options_with_greeks_and_is_cached(
    server: ExtendedIBTestServer,
) -> None:
    async def body() -> None:
        h = await started(server)
        spot = float(server.bars["AAPL"]["close"].iloc[-1])
        chains = IBOptionChains(h.broker, expiries=2, strikes=5, timeout=5.0)
        assert chains.stale("AAPL") and chains.cached("AAPL") is None
        chain = await chains.fetch("AAPL", spot)
        assert len(chain) == 2 * 5 * 2  # expiries x strikes x (call, put)
        today = dt.date.today()
        assert all(q.instrument.expiry > today for q in chain)
        assert {q.instrument.right for q in chain} == {Right.CALL, Right.PUT}
        for q in chain:
            assert 0 < q.bid < q.ask
            # IB sent no model greeks: the volatility is implied from the mid, so it is the
            # server's 30%, and the delta is Black-Scholes at it.
            assert q.iv == pytest.approx(0.3, abs=0.02)
            t = years_to_expiry(q.instrument.expiry, q.ts)
            want = bs_delta(q.instrument.right.value, spot, q.instrument.strike, t, q.iv, 0.04)
            assert q.delta == pytest.approx(want, abs=1e-6)
        assert not chains.stale("AAPL") and chains.cached("AAPL") == chain
        assert server.chain_requests == ["AAPL"]
        with pytest.raises(ChainError, match="NOPE"):
            await chains.fetch("NOPE", 10.0)
        await h.broker.stop()

    run(body)


def test_covered_call_trades_both_legs_live(
    server: ExtendedIBTestServer, tmp_path: Path, make_config: ConfigBuilder
) -> None:
    cfg: Config = make_config(
        broker={"kind": "ib", "ib": {"port": server.port, "client_id": 25, "request_timeout": 5.0}},
        market={"source": "ib", "symbols": ["AAPL"], "bar_seconds": 0.1, "stale_after": 30.0},
        journal={"path": str(tmp_path / "journal.sqlite")},
        strategies=[
            {
                "name": "cc",
                "class": "covered_call",
                "symbols": ["AAPL"],
                "capital": 100_000,
                "params": {"vol_window": 2, "otm_pct": 1.0, "days": 30.0, "roll_days": 0.0},
            }
        ],
    )
    broker = BrokerIntegration(cfg.broker.ib)
    source, _history = ib_source(cfg, broker, SourceHooks())
    engine = Engine(cfg, broker=broker, source=source, journal=Journal(cfg.journal_path))
    engine.start(timeout=20)
    try:

        def sec_types() -> list[str]:
            return [f[4] for f in list(server.place_fields.values())]

        wait(lambda: "STK" in sec_types(), 30, "the stock leg at IB")
        wait(lambda: "OPT" in sec_types(), 30, "the option leg at IB")
        opt = next(f for f in server.place_fields.values() if f[4] == "OPT")
        assert (opt[16], opt[7]) == ("SELL", "C")  # a short call
        wait(
            lambda: any(p.instrument.is_option for p in engine.oms.positions.values()),
            30,
            "the short call in the engine's positions",
        )
        assert server.chain_requests[:1] == ["AAPL"]
        lines = [ln.message for ln in engine.activity.lines]
        assert any("option chain for AAPL" in m and "options from IB" in m for m in lines)
        assert not any("option legs (covered calls) are skipped" in m for m in lines)
    finally:
        engine.stop()
