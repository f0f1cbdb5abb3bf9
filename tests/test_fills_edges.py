"""The fill model and the commission models at their edges: a stop touched exactly at the bar's
high, a volume cap that rounds to nothing, quotes of 0 or under $1, NaN levels in the array
forms, IB's per-share minimum and cap (:mod:`fbterm.execution.brokers.fills`,
:mod:`fbterm.execution.costs`).

Each test names what a quant would lose; they were written against the mutants the rest of
the suite let through (README "Mutation testing")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import FillEvent
from fbterm.execution.brokers.fills import (
    FillDecision,
    MarketUpdate,
    limits_touched,
    market_price,
    market_prices,
    match_order,
    stop_touched,
    stops_touched,
)
from fbterm.execution.brokers.paper import PaperBroker
from fbterm.execution.costs import (
    FractionCommission,
    PerShareCommission,
    commission_fraction,
    commission_from_config,
    commission_model,
)
from fbterm.model import Bar, Order, OrderStatus, OrderType, Side, Stock, Tick

T0 = 1_700_000_000.0


def order(
    side: Side = Side.BUY,
    typ: OrderType = OrderType.MARKET,
    qty: float = 10,
    *,
    lmt: float | None = None,
    stp: float | None = None,
    triggered: bool = False,
) -> Order:
    return Order(
        "T-1",
        Stock("AAPL"),
        side,
        qty,
        typ,
        limit_price=lmt,
        stop_price=stp,
        created_ts=T0,
        triggered=triggered,
    )


def bar(o: float, h: float, lo: float, c: float, v: float = 0.0) -> MarketUpdate:
    return MarketUpdate(T0 + 1, o, h, lo, c, v)


# ------------------------------------------------------------------------------- stops


def test_a_buy_stop_touched_exactly_at_the_bars_high_fills_at_the_stop() -> None:
    d = match_order(order(typ=OrderType.STOP, stp=101.0), bar(100, 101, 99.5, 100.5))
    assert d == FillDecision(10, 101.0, True)
    assert match_order(order(typ=OrderType.STOP, stp=101.01), bar(100, 101, 99.5, 100.5)) is None


def test_a_sell_stop_touched_exactly_at_the_bars_low_fills_at_the_stop() -> None:
    d = match_order(order(Side.SELL, OrderType.STOP, stp=99.0), bar(100, 100.5, 99, 99.5))
    assert d == FillDecision(10, 99.0, True)


def test_quotes_touch_a_stop_exactly_at_its_price() -> None:
    assert stop_touched(True, 101.0, 100.0, 99.0, ask=101.0)
    assert not stop_touched(True, 101.0, 100.0, 99.0, ask=100.99)
    assert stop_touched(False, 99.0, 100.0, 99.5, bid=99.0)
    assert not stop_touched(False, 99.0, 100.0, 99.5, bid=0.0)  # no bid is no quote


def test_a_stop_on_an_update_whose_volume_cap_rounds_to_zero_fills_nothing() -> None:
    # Triggered on a print of 1 share at 50% participation: floor(0.5) = 0. The stop is now
    # triggered; there must be no phantom fill (1 unit at 0.00 would book a wrong position).
    u = MarketUpdate(T0 + 1, 100.0, 101.0, 99.0, 100.0, volume=1.0)
    stop = order(typ=OrderType.STOP, stp=100.5)
    assert match_order(stop, u, participation=0.5) == FillDecision(0.0, 0.0, True)
    # already triggered: the same update changes nothing
    done = order(typ=OrderType.STOP, stp=100.5, triggered=True)
    assert match_order(done, u, participation=0.5) is None


def test_the_paper_venue_books_no_phantom_fill_and_fills_the_stop_on_the_next_volume() -> None:
    events: list[object] = []
    b = PaperBroker(PaperBrokerConfig(), symbols=["AAPL"], participation=0.5, clock=lambda: T0)
    b.set_event_handler(events.append)
    b.execute_order(order(typ=OrderType.STOP, stp=100.5, qty=4))
    b.on_tick(Tick("AAPL", T0 + 1, 100.9, 101.1, 101.0, 1))  # touches 100.5: triggered
    assert not [e for e in events if isinstance(e, FillEvent)]
    assert b.orders["T-1"].triggered and b.orders["T-1"].status is OrderStatus.SUBMITTED
    assert "AAPL" not in b.positions or b.positions["AAPL"].is_flat
    b.on_tick(Tick("AAPL", T0 + 2, 101.9, 102.1, 102.0, 100))
    fills = [e.fill for e in events if isinstance(e, FillEvent)]
    assert [(f.quantity, f.price) for f in fills] == [(4, 102.1)]  # a triggered stop is a market


def test_a_triggered_stop_limit_is_a_limit_order() -> None:
    buy = order(typ=OrderType.STOP_LIMIT, stp=100.0, lmt=101.0, triggered=True)
    assert match_order(buy, bar(101, 102, 100.5, 101.5)) == FillDecision(10, 101.0, True)
    assert match_order(buy, bar(102, 103, 101, 102.5)) == FillDecision(10, 101.0, True)
    assert match_order(buy, bar(102, 103, 101.01, 102.5)) == FillDecision(0.0, 0.0, True)
    sell = order(Side.SELL, OrderType.STOP_LIMIT, stp=100.0, lmt=99.0, triggered=True)
    assert match_order(sell, bar(99, 99.5, 98, 99)) == FillDecision(10, 99.0, True)
    assert match_order(sell, bar(98, 99, 97, 98)) == FillDecision(10, 99.0, True)
    assert match_order(sell, bar(98, 98.99, 97, 98)) == FillDecision(0.0, 0.0, True)


# ------------------------------------------------------------------------------ limits


def test_limits_touched_exactly_at_the_bars_range_fill_at_the_limit() -> None:
    assert match_order(order(typ=OrderType.LIMIT, lmt=99.0), bar(100, 101, 99, 100)) == (
        FillDecision(10, 99.0, False)
    )
    sell = order(Side.SELL, OrderType.LIMIT, lmt=101.0)
    assert match_order(sell, bar(100, 101, 99, 100)) == FillDecision(10, 101.0, False)
    assert match_order(sell, bar(100, 100.99, 99, 100)) is None


def test_an_ask_beyond_the_bars_range_can_fill_a_buy_limit() -> None:
    u = MarketUpdate(T0 + 1, 100.0, 100.0, 100.0, 100.0, bid=98.9, ask=99.0)
    d = match_order(order(typ=OrderType.LIMIT, lmt=99.0), u)
    assert d == FillDecision(10, 99.0, False)
    s = MarketUpdate(T0 + 1, 100.0, 100.0, 100.0, 100.0, bid=101.0, ask=101.1)
    assert match_order(order(Side.SELL, OrderType.LIMIT, lmt=101.0), s) == (
        FillDecision(10, 101.0, False)
    )


# ------------------------------------------------------------------ quotes at 0 or under $1


def test_market_orders_use_quotes_under_a_dollar_and_ignore_missing_ones() -> None:
    assert market_price(True, 0.52, bid=0.49, ask=0.51) == 0.51
    assert market_price(False, 0.52, bid=0.49, ask=0.51) == 0.49
    assert market_price(True, 0.52, bid=0.49, ask=0.0) == 0.52  # no ask: the open
    assert market_price(False, 0.52, bid=0.0, ask=0.51) == 0.52


def test_market_prices_agrees_with_market_price_under_a_dollar() -> None:
    opens = np.array([1, 1, 1, 1])  # whole-dollar opens given as integers
    buy = np.array([True, True, False, False])
    bid = np.array([0.4, 0.4, 0.0, 0.4])
    ask = np.array([0.6, 0.0, 0.6, 0.6])
    got = market_prices(opens, buy=buy, bid=bid, ask=ask)
    want = [
        market_price(bool(b), 1.0, float(bi), float(a))
        for b, bi, a in zip(buy, bid, ask, strict=True)
    ]
    assert got.tolist() == want == [0.6, 1.0, 1.0, 0.4]
    assert got.dtype == np.float64


def test_market_prices_refuses_quotes_without_sides() -> None:
    with pytest.raises(
        ValueError, match=r"^market_prices: buy is needed when bid or ask is given$"
    ):
        market_prices(np.array([1.0]), ask=np.array([1.0]))


def test_nan_levels_in_the_array_forms_are_quietly_never_touched() -> None:
    # A backtest passes NaN where there is no stop or limit: no RuntimeWarning per bar.
    level = np.array([np.nan, 100.0])
    hi, lo = np.array([np.nan, 101.0]), np.array([np.nan, 99.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert stops_touched(True, level, hi, lo).tolist() == [False, True]
        assert limits_touched(False, level, hi, lo).tolist() == [False, True]
        got = market_prices(
            np.array([1.0, 2.0]),
            buy=np.array([True, False]),
            bid=np.array([np.nan, 1.5]),
            ask=np.array([np.nan, 2.5]),
        )
        assert got.tolist() == [1.0, 1.5]


# -------------------------------------------------------------------- participation cap


def test_no_participation_cap_when_it_is_off_or_there_is_no_volume() -> None:
    u = MarketUpdate(T0 + 1, 100.0, 100.0, 100.0, 100.0, volume=10.0)
    for participation in (None, 0.0, -0.5):
        assert match_order(order(qty=50), u, participation=participation) == (
            FillDecision(50, 100.0, False)
        )
    quiet = MarketUpdate(T0 + 1, 100.0, 100.0, 100.0, 100.0, volume=0.0)
    assert match_order(order(qty=50), quiet, participation=0.1) == FillDecision(50, 100.0, False)


def test_fractional_units_may_fill_a_fraction_of_the_cap() -> None:
    u = MarketUpdate(T0 + 1, 100.0, 100.0, 100.0, 100.0, volume=3.0)
    assert match_order(order(qty=5), u, participation=0.5, whole_units=False) == (
        FillDecision(1.5, 100.0, False)
    )
    assert match_order(order(qty=5), u, participation=0.5) == FillDecision(1.0, 100.0, False)


def test_a_filled_order_matches_nothing() -> None:
    done = order(qty=10)
    done = done.with_fill(10, 100.0, ts=T0)
    assert match_order(done, bar(100, 101, 99, 100)) is None


# --------------------------------------------------------------------- market updates


def test_market_updates_from_bars_and_ticks_keep_every_field() -> None:
    u = MarketUpdate.from_bar(Bar("AAPL", T0, 1.0, 2.0, 0.5, 1.5, 700.0))
    assert u == MarketUpdate(T0, 1.0, 2.0, 0.5, 1.5, 700.0, None, None)
    t = MarketUpdate.from_tick(Tick("AAPL", T0, 9.9, 10.1, 10.0, 30.0))
    assert t == MarketUpdate(T0, 10.0, 10.0, 10.0, 10.0, 30.0, 9.9, 10.1)


# ---------------------------------------------------------------------------- commissions


def test_per_share_commission_defaults_to_shares() -> None:
    ib = PerShareCommission()
    assert ib(1000, 50.0) == pytest.approx(5.0)  # no multiplier given: shares, 0.005 each
    assert ib(1000, 50.0, 2) == pytest.approx(650.0)  # any multiplier > 1: contracts


def test_per_share_commission_cap_applies_below_the_minimum_but_not_without_a_price() -> None:
    ib = PerShareCommission()
    assert ib(10, 5.0) == pytest.approx(0.5)  # 1% of 50.00 is under the 1.00 minimum
    assert ib(100, 0.0) == pytest.approx(1.0)  # no price to cap by: the minimum
    assert ib(-5, 10.0) == 0.0


def test_paper_commission_follows_its_configuration() -> None:
    per_share = commission_from_config(
        PaperBrokerConfig(
            commission="per_share",
            commission_per_share=0.01,
            commission_minimum=2.0,
            commission_max_fraction=0.5,
            commission_per_contract=1.25,
        )
    )
    assert per_share == PerShareCommission(0.01, 2.0, 0.5, 1.25)
    pct = commission_from_config(PaperBrokerConfig(commission="percent", commission_fraction=0.003))
    assert pct == FractionCommission(0.003)


def test_commission_models_by_name_and_their_share_of_value() -> None:
    assert commission_model("fraction", fraction=0.001) == FractionCommission(0.001)
    assert commission_model("fixed") == PerShareCommission()
    assert commission_model("per_share", minimum=0.0) == PerShareCommission(minimum=0.0)
    assert commission_fraction(FractionCommission(0.002)) == 0.002
    assert commission_fraction(PerShareCommission()) == 0.0
    assert FractionCommission(0.01)(-10, 5.0) == pytest.approx(0.5)  # a sell's size counts


def test_a_one_unit_order_fills() -> None:
    assert match_order(order(qty=1), bar(100, 101, 99, 100)) == FillDecision(1, 100.0, False)


def test_stops_triggered_by_the_quote_alone_fill_at_the_quote() -> None:
    # A tick at 100 whose ask is 101: a buy stop at 100.5 is reached by what a buyer pays.
    buy = MarketUpdate.from_tick(Tick("AAPL", T0, 99.0, 101.0, 100.0, 0))
    assert match_order(order(typ=OrderType.STOP, stp=100.5), buy) == FillDecision(10, 101.0, True)
    sell = MarketUpdate.from_tick(Tick("AAPL", T0, 99.0, 101.0, 100.0, 0))
    assert match_order(order(Side.SELL, OrderType.STOP, stp=99.5), sell) == (
        FillDecision(10, 99.0, True)
    )


def test_a_sell_stop_under_a_dollar_is_touched_by_the_bid() -> None:
    assert stop_touched(False, 0.6, 1.0, 0.7, bid=0.5)


def test_a_triggered_sell_stop_limit_keeps_a_better_open() -> None:
    sell = order(Side.SELL, OrderType.STOP_LIMIT, stp=100.0, lmt=99.0, triggered=True)
    assert match_order(sell, bar(99.5, 99.8, 98, 99)) == FillDecision(10, 99.5, True)


def test_a_quote_beyond_the_last_trade_can_fill_a_triggered_stop_limit() -> None:
    # The last trade (100) is stale against the quote: a buyer can take the 99.40 ask, under
    # the 99.45 limit of a buy stop-limit the print at 100 triggered.
    buy = MarketUpdate.from_tick(Tick("AAPL", T0, 99.2, 99.4, 100.0, 0))
    d = match_order(order(typ=OrderType.STOP_LIMIT, stp=99.5, lmt=99.45), buy)
    assert d == FillDecision(10, 99.45, True)
    # and a seller can hit a 100.60 bid, over the 100.55 limit of a sell stop-limit
    sell = MarketUpdate.from_tick(Tick("AAPL", T0, 100.6, 100.8, 100.0, 0))
    d = match_order(order(Side.SELL, OrderType.STOP_LIMIT, stp=100.5, lmt=100.55), sell)
    assert d == FillDecision(10, 100.55, True)
