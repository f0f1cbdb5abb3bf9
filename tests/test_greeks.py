"""Greeks per position, per underlying and for the portfolio; the delta and vega limits in the
gate; the risk pane's greeks table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from test_engine import Rig

from fbterm import commands as C
from fbterm.config import Config
from fbterm.model import Future, Option, Right, Side, Stock, TradingState
from fbterm.model.greeks import GreekRow, Greeks
from fbterm.pricing import bs_delta, bs_gamma, bs_theta, bs_vega, expiry_ts
from fbterm.risk.greeks import Pricing, check_greek_limits, greek_rows, position_greeks, total
from fbterm.snapshot import RiskView
from fbterm.tui.risk import greeks_text

if TYPE_CHECKING:
    from conftest import ConfigBuilder, FakeClock

EXP = dt.date(2026, 6, 19)
TS = expiry_ts(EXP) - 0.5 * 365 * 86400  # half a year before expiry
CALL = Option("AAPL", Right.CALL, 200.0, EXP)
PUT = Option("AAPL", Right.PUT, 180.0, EXP)


def test_option_position_greeks_are_black_scholes_times_contracts_and_multiplier() -> None:
    p = Pricing(190.0, 0.3, TS, 0.04)
    g = position_greeks(CALL, -2, p)
    assert g is not None
    t = 0.5
    assert g.delta == pytest.approx(-200 * bs_delta("C", 190, 200, t, 0.3, 0.04), rel=1e-6)
    assert g.dollar_delta == pytest.approx(g.delta * 190.0)
    assert g.gamma == pytest.approx(-200 * bs_gamma(190, 200, t, 0.3, 0.04), rel=1e-6)
    assert g.vega == pytest.approx(-200 * bs_vega(190, 200, t, 0.3, 0.04) / 100, rel=1e-6)
    assert g.theta == pytest.approx(-200 * bs_theta("C", 190, 200, t, 0.3, 0.04) / 365, rel=1e-6)
    assert g.vega < 0 < g.theta  # short options earn time decay and lose on volatility
    assert position_greeks(CALL, 1, Pricing(190.0, None, TS)) is None


def test_delta_one_instruments_use_their_multiplier() -> None:
    es = Future("ES", dt.date(2025, 12, 19))
    g = position_greeks(es, 2, Pricing(5000.0, None, TS))
    assert g == Greeks(delta=100.0, dollar_delta=500_000.0)
    assert position_greeks(Stock("AAPL"), -10, Pricing(190.0, None, TS)) == Greeks(-10, -1900.0)


def test_rows_sum_per_underlying_and_name_what_could_not_be_priced() -> None:
    p = Pricing(190.0, 0.3, TS, 0.04)
    rows = greek_rows(
        [
            (Stock("AAPL"), 300, Pricing(190.0, None, TS)),
            (CALL, -3, p),
            (PUT, 2, None),
            (Stock("MSFT"), 10, Pricing(400.0, None, TS)),
        ]
    )
    assert [r.underlying for r in rows] == ["AAPL", "MSFT"]
    aapl = rows[0]
    call = position_greeks(CALL, -3, p)
    assert call is not None
    assert aapl.greeks.delta == pytest.approx(300 + call.delta)
    assert aapl.greeks.vega == pytest.approx(call.vega)
    assert aapl.positions == 3 and aapl.unpriced == (PUT.key,)
    assert total(rows).dollar_delta == pytest.approx(aapl.greeks.dollar_delta + 4000.0)


def test_limits_refuse_growth_past_them_and_let_reductions_through() -> None:
    now = Greeks(dollar_delta=90_000.0, vega=400.0)
    assert check_greek_limits(now, Greeks(dollar_delta=20_000.0), 100_000.0, 0.0) == (
        "max_portfolio_delta: 110,000 > 100,000 (dollar delta)"
    )
    assert check_greek_limits(now, Greeks(dollar_delta=-20_000.0), 100_000.0, 0.0) is None
    over = Greeks(dollar_delta=150_000.0)
    assert check_greek_limits(over, Greeks(dollar_delta=-10_000.0), 100_000.0, 0.0) is None
    assert "max_portfolio_vega: 600 > 500" in (
        check_greek_limits(now, Greeks(vega=200.0), 0.0, 500.0) or ""
    )
    assert check_greek_limits(now, None, 0.0, 0.0) is None  # limits off: nothing to price
    assert "cannot be priced" in (check_greek_limits(now, None, 0.0, 500.0) or "")


@pytest.fixture
def greek_rig(
    tmp_path: Path, make_config: ConfigBuilder, fake_clock: FakeClock
) -> Callable[..., Rig]:
    def build(**risk: float) -> Rig:
        cfg: Config = make_config(
            market={"symbols": ["AAPL", "MSFT"], "bar_seconds": 1.0, "stale_after": 10.0},
            journal={"path": str(tmp_path / "journal.sqlite")},
            risk={"max_orders_per_second": 1000.0, **risk},
            strategies=[],
        )
        return Rig(cfg, fake_clock, tmp_path / "journal.sqlite")

    return build


def test_gate_refuses_an_order_past_the_portfolio_delta_limit(
    greek_rig: Callable[..., Rig],
) -> None:
    rig = greek_rig(max_portfolio_delta=1_500.0)
    try:
        rig.ticks(1)
        assert rig.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=10)).ok
        rig.ticks(1)
        res = rig.command(C.NewOrder(symbol="AAPL", side=Side.BUY, quantity=10))
        assert not res.ok and "max_portfolio_delta" in res.message
        # A hedge in another name brings the dollar delta down: allowed.
        assert rig.command(C.NewOrder(symbol="MSFT", side=Side.SELL, quantity=10)).ok
        rig.ticks(1)
        snap = rig.engine.build_snapshot()
        rows = {r.underlying: r for r in snap.risk.greeks}
        assert rows["AAPL"].greeks.delta == 10 and rows["MSFT"].greeks.delta == -10
        assert snap.risk.portfolio_greeks.dollar_delta == pytest.approx(
            10 * rig.px["AAPL"] - 10 * rig.px["MSFT"]
        )
        assert "delta $" in {g.name for g in snap.risk.gauges}
    finally:
        rig.close()


def test_gate_refuses_an_option_order_past_the_vega_limit_and_the_pane_shows_it(
    greek_rig: Callable[..., Rig],
) -> None:
    rig = greek_rig(max_portfolio_vega=100.0)
    try:
        rig.ticks(1)
        chain = rig.engine.market_state.option_chain("AAPL")
        opt = next(q.instrument for q in chain if q.instrument.right is Right.CALL)
        vega_one = position_greeks(
            opt, 1, Pricing(chain[0].underlying_price, chain[0].iv, chain[0].ts, 0.04)
        )
        assert vega_one is not None and 0 < vega_one.vega < 100.0
        assert rig.command(C.NewOrder(symbol=opt.key, side=Side.BUY, quantity=1)).ok
        rig.ticks(2)
        assert rig.engine.oms.position(opt.key) == 1
        res = rig.command(C.NewOrder(symbol=opt.key, side=Side.BUY, quantity=50))
        assert not res.ok and "max_portfolio_vega" in res.message
        snap = rig.engine.build_snapshot()
        (row,) = snap.risk.greeks
        assert row.underlying == "AAPL" and row.greeks.vega > 0 and row.greeks.theta < 0
        text = greeks_text(snap.risk)
        assert text.splitlines()[1].startswith("AAPL") and "portfolio" in text
    finally:
        rig.close()


def test_pane_shows_no_greeks_table_for_a_book_of_stocks() -> None:
    assert greeks_text(_risk_with(Greeks(10, 1000.0))) == ""


@pytest.mark.parametrize("width", [0, 80, 57, 48, 40, 30, 17])
def test_the_greeks_table_fits_its_pane(width: int) -> None:
    """At 100 columns the risk pane is ~40 cells wide: the table drops its least telling
    columns (shares delta, then gamma, theta) instead of wrapping rows in two."""
    aapl = Greeks(326, 62_005.0, -7.2, -46, 44)
    lines = greeks_text(_risk_with(aapl, aapl), width).splitlines()
    assert len(lines) == 3
    assert all(len(line) <= (width or 99) for line in lines)
    assert "delta $" in lines[0] and "+62,005" in lines[1] and "+62,005" in lines[2]
    assert lines[2].startswith("portfolio" if width == 0 or width >= 48 else "total")
    if width == 0 or width >= 57:
        assert lines[0].split() == ["greeks", "delta", "delta", "$", "gamma", "vega/pt", "theta/d"]
    if width == 40:
        assert lines[0].split() == ["greeks", "delta", "$", "vega/pt", "theta/d"]


def _risk_with(aapl: Greeks, total: Greeks | None = None) -> RiskView:
    """A risk view holding only AAPL's greeks (and the portfolio's ``total``)."""
    return RiskView(
        TradingState.ACTIVE,
        "",
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
        (),
        (GreekRow("AAPL", aapl, 1),),
        total or Greeks(),
    )
