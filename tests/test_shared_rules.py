"""One rule, one place: the array forms of the fill rules agree with their scalar twins, the
backtest's bar exits fill where the fill model fills the same order, and the fast path's
prepared sizing is target_quantity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fbterm.config import StrategyRiskConfig
from fbterm.execution.brokers.fills import (
    MarketUpdate,
    limit_touched,
    limits_touched,
    market_price,
    market_prices,
    match_order,
    stop_touched,
    stops_touched,
)
from fbterm.model import Order, OrderType, Side, Stock
from fbterm.risk.stops import StopRules, bar_exit
from fbterm.strategies.base import SIZING_MODES, Sizing, sizer, target_quantity

T0 = 1_700_000_000.0


def _bars(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random bars (open, high, low, close) that are sometimes flat and sometimes gap."""
    rng = np.random.default_rng(seed)
    o = np.round(100 + rng.normal(0, 3, n), 2)
    c = np.round(o + rng.normal(0, 2, n), 2)
    hi = np.maximum(o, c) + np.round(np.abs(rng.normal(0, 1, n)), 2) * (rng.random(n) > 0.2)
    lo = np.minimum(o, c) - np.round(np.abs(rng.normal(0, 1, n)), 2) * (rng.random(n) > 0.2)
    return o, hi, lo, c


def _levels(n: int, seed: int) -> np.ndarray:
    """Levels around the bars, on the same 1-cent grid so exact touches happen; some NaN."""
    rng = np.random.default_rng(seed)
    lv = np.round(100 + rng.normal(0, 3, n), 2)
    lv[rng.random(n) < 0.1] = np.nan
    return lv


@pytest.mark.parametrize("buy", [True, False])
def test_stops_touched_is_stop_touched_on_every_bar(buy: bool) -> None:
    _, hi, lo, _ = _bars(5000, 1)
    stop = _levels(5000, 2)
    want = [stop_touched(buy, s, h, low) for s, h, low in zip(stop, hi, lo, strict=True)]
    np.testing.assert_array_equal(stops_touched(buy, stop, hi, lo), want)


@pytest.mark.parametrize("buy", [True, False])
def test_limits_touched_is_limit_touched_on_every_bar(buy: bool) -> None:
    _, hi, lo, _ = _bars(5000, 3)
    limit = _levels(5000, 4)
    want = [limit_touched(buy, x, h, low) for x, h, low in zip(limit, hi, lo, strict=True)]
    np.testing.assert_array_equal(limits_touched(buy, limit, hi, lo), want)


def test_market_prices_is_market_price() -> None:
    rng = np.random.default_rng(5)
    n = 2000
    o = 100 + rng.normal(0, 1, n)
    bid = np.where(rng.random(n) < 0.3, np.nan, o - 0.05)
    ask = np.where(rng.random(n) < 0.3, np.nan, o + 0.05)
    ask[rng.random(n) < 0.05] = 0.0  # a zero quote is no quote
    buy = rng.random(n) < 0.5
    want = [
        market_price(bool(b), x, None if y != y else y, None if z != z else z)
        for b, x, y, z in zip(buy, o, bid, ask, strict=True)
    ]
    np.testing.assert_array_equal(market_prices(o, buy=buy, bid=bid, ask=ask), want)
    # Bars carry no quotes: the open, whatever the side.
    np.testing.assert_array_equal(market_prices(o), [market_price(True, x) for x in o])
    with pytest.raises(ValueError):
        market_prices(o, bid=bid)


@pytest.mark.parametrize("long", [True, False])
def test_bar_exit_fills_where_the_fill_model_fills_the_exit_order(long: bool) -> None:
    o, hi, lo, c = _bars(3000, 6)
    stop, tp = _levels(3000, 7), _levels(3000, 8)
    side = Side.SELL if long else Side.BUY
    exits = 0
    for i in range(len(o)):
        u = MarketUpdate(T0, o[i], hi[i], lo[i], c[i])
        hit = bar_exit(long, stop[i], tp[i], o[i], hi[i], lo[i])
        s_order = t_order = None
        if stop[i] == stop[i]:
            s_order = Order("s", Stock("X"), side, 10, OrderType.STOP, stop_price=stop[i])
        if tp[i] == tp[i]:
            t_order = Order("t", Stock("X"), side, 10, OrderType.LIMIT, limit_price=tp[i])
        s_fill = match_order(s_order, u) if s_order else None
        t_fill = match_order(t_order, u) if t_order else None
        t_touched = t_fill is not None and limit_touched(not long, tp[i], hi[i], lo[i])
        if s_fill is not None and s_fill.quantity > 0:
            assert hit == ("stop", s_fill.price)
        elif t_touched:
            assert t_fill is not None
            assert hit == ("take-profit", t_fill.price)
        else:
            assert hit is None
        exits += hit is not None
    assert exits > 100


@pytest.mark.parametrize("mode", SIZING_MODES)
@pytest.mark.parametrize("cf", [0.0, 0.002])
def test_prepared_sizer_is_target_quantity(mode: str, cf: float) -> None:
    rng = np.random.default_rng(9)
    sizing = Sizing(mode, {"fixed": 100.0, "cash": 10_000.0}.get(mode, 0.5))
    size = sizer(sizing, commission_fraction=cf)
    for _ in range(2000):
        t = float(rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0]))
        px = float(rng.choice([math.nan, 0.0, -1.0, math.inf, *(10 + rng.random(5) * 100)]))
        eq = float(rng.normal(50_000, 30_000))
        pos = float(rng.choice([0.0, 120.0, -80.0]))
        want = target_quantity(t, px, eq, sizing, commission_fraction=cf, position=pos)
        assert size(t, px, eq, pos) == want
        assert want == math.floor(abs(want)) * math.copysign(1, want)


def test_stop_rules_levels_pick_the_tightest_stop_and_the_nearest_target() -> None:
    rules = StopRules.from_config(
        StrategyRiskConfig(
            stop_loss_pct=2.0, stop_loss_points=1.0, take_profit_pct=5.0, take_profit_points=3.0,
            trailing_stop_pct=1.0,
        )
    )  # fmt: skip
    assert rules is not None
    assert rules.levels(True, 100.0, 100.0) == (99.0, 103.0)
    assert rules.levels(True, 100.0, 110.0) == pytest.approx((108.9, 103.0))
    assert rules.levels(False, 100.0, 100.0) == (101.0, 97.0)
    assert StopRules.from_config(StrategyRiskConfig()) is None
    assert StopRules.from_config(None) is None
