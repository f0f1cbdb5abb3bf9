"""The risk gate at its edges: what an operator or a quant would lose if one comparison, sign or
constant in :mod:`fbterm.risk.portfolio` were wrong.

Each test names the loss it guards against. They were written against the mutants that the
rest of the suite let through (README "Mutation testing")."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fbterm.config import RiskConfig
from fbterm.model import Option, Order, OrderType, Right, Side, Stock, TradingState
from fbterm.risk.portfolio import (
    PortfolioLevelRisk,
    drawdown_breached,
    drawdown_now,
    level_of,
    max_drawdown,
    reaches,
    reduces_position,
)
from fbterm.sessions import trading_day

T0 = 1_700_000_000.0  # 2023-11-14 22:13 UTC
CALL = Option("AAPL", Right.CALL, 120.0, dt.date(2030, 1, 18))


@dataclass
class Book:
    """The engine's state as the gate reads it (the RiskInputs protocol), as plain data."""

    prices: dict[str, float] = field(default_factory=lambda: {"AAPL": 100.0, CALL.key: 5.0})
    qty: dict[str, float] = field(default_factory=dict)
    sqty: dict[tuple[str, str], float] = field(default_factory=dict)
    gross: float = 0.0
    stale: dict[str, float] = field(default_factory=dict)

    def last_price(self, key: str) -> float | None:
        return self.prices.get(key)

    def position(self, key: str) -> float:
        return self.qty.get(key, 0.0)

    def strategy_position(self, strategy_id: str, key: str) -> float:
        return self.sqty.get((strategy_id, key), 0.0)

    def gross_exposure(self) -> float:
        return self.gross

    def stale_age(self, symbol: str) -> float | None:
        return self.stale.get(symbol)


def gate(
    book: Book | None = None, clock: Callable[[], float] | None = None, **limits: float
) -> PortfolioLevelRisk:
    cfg = RiskConfig(**{"max_orders_per_second": 1000.0, **limits})
    return PortfolioLevelRisk(cfg, book or Book(), clock=clock or (lambda: T0))


def order(
    qty: float,
    side: Side = Side.BUY,
    *,
    inst: Stock | Option | None = None,
    typ: OrderType = OrderType.MARKET,
    lmt: float | None = None,
    stp: float | None = None,
    sid: str = "s1",
    signal_price: float | None = None,
) -> Order:
    return Order(
        "O",
        inst or Stock("AAPL"),
        side,
        qty,
        typ,
        limit_price=lmt,
        stop_price=stp,
        strategy_id=sid,
        signal_price=signal_price,
    )


# ------------------------------------------------------------- the operator's exit orders


def two_strategies() -> Book:
    """s1 long 10 AAPL, s2 short 50: the account is net short 40."""
    return Book(qty={"AAPL": -40}, sqty={("s1", "AAPL"): 10, ("s2", "AAPL"): -50})


def test_operator_order_growing_the_strategys_own_position_cannot_pass_a_halt() -> None:
    # Buying 20 more for s1 shrinks the account's net short (-40 -> -20), but it is not an
    # exit: the operator would be adding risk to s1 while trading is HALTED.
    g = gate(two_strategies())
    g.halt_trading("drawdown")
    assert g.check_order(order(20), operator=True) == "halted: trading is HALTED (drawdown)"
    # The real exit, selling s1's 10, passes although it grows the account's short.
    assert g.check_order(order(10, Side.SELL), operator=True) is None


def test_operator_order_flipping_the_strategys_own_position_cannot_pass_a_halt() -> None:
    book = Book(qty={"AAPL": 60}, sqty={("s1", "AAPL"): 10, ("s2", "AAPL"): 50})
    g = gate(book)
    g.halt_trading("manual")
    # Selling 30 for s1 shrinks the account (60 -> 30) but flips s1 from +10 to -20.
    assert (
        g.check_order(order(30, Side.SELL), operator=True) == "halted: trading is HALTED (manual)"
    )
    assert g.check_order(order(10, Side.SELL), operator=True) is None


def test_operator_order_growing_the_strategys_position_cannot_pass_reduce_only() -> None:
    g = gate(two_strategies())
    g.reduce_only("desk")
    assert g.check_order(order(20), operator=True) == (
        "reduce_only: order would grow AAPL from -40 to -20"
    )


def test_operator_order_growing_the_strategys_position_is_held_to_every_limit() -> None:
    # ACTIVE: an order counted as "reducing" skips the value limits; this one must not.
    g = gate(two_strategies(), max_order_value=1_500)
    assert g.check_order(order(20), operator=True) == "max_order_value: 2,000 > 1,500"


def test_a_strategy_order_that_grows_the_account_is_held_to_the_limits_without_operator() -> None:
    # Without the operator flag the account's position decides: s1 selling its 10 grows the
    # account's short, so it is an entry at account level and the limits apply.
    g = gate(two_strategies(), max_order_value=500)
    assert g.check_order(order(10, Side.SELL)) == "max_order_value: 1,000 > 500"
    assert g.check_order(order(10, Side.SELL), operator=True) is None


# --------------------------------------------------------------------- option contracts


def test_option_order_value_counts_the_contract_multiplier() -> None:
    # 10 calls at 5.00 are 5,000 of premium, not 50.
    g = gate(max_order_value=4_000)
    assert g.check_order(order(10, inst=CALL)) == "max_order_value: 5,000 > 4,000"
    assert g.check_order(order(8, inst=CALL)) is None  # 4,000: at the limit


def test_option_position_value_counts_the_contract_multiplier() -> None:
    book = Book(qty={CALL.key: 5})
    g = gate(book, max_position_value=9_000)
    assert g.check_order(order(14, inst=CALL)) == f"max_position_value: {CALL.key} 9,500 > 9,000"
    assert g.check_order(order(13, inst=CALL)) is None


def test_option_strategy_position_value_counts_the_contract_multiplier() -> None:
    book = Book(qty={CALL.key: 5}, sqty={("s1", CALL.key): 5})
    g = gate(book, max_strategy_position_value=7_000)
    assert g.check_order(order(10, inst=CALL)) == (
        f"max_strategy_position_value: s1 {CALL.key} 7,500 > 7,000"
    )
    assert g.check_order(order(9, inst=CALL)) is None  # 7,000: at the limit


def test_option_gross_exposure_counts_the_contract_multiplier() -> None:
    g = gate(Book(gross=10_000), max_gross_exposure=14_000)
    assert g.check_order(order(9, inst=CALL)) == "max_gross_exposure: 14,500 > 14,000"
    assert g.check_order(order(8, inst=CALL)) is None


# ------------------------------------------------------------------------ gross exposure


def test_gross_exposure_does_not_count_an_existing_position_twice() -> None:
    # Long 100 AAPL at 100 is already 10,000 of the 20,000 allowed: 100 more reach it exactly.
    book = Book(qty={"AAPL": 100}, gross=10_000)
    g = gate(book, max_gross_exposure=20_000)
    assert g.check_order(order(100)) is None
    assert g.check_order(order(101)) == "max_gross_exposure: 20,100 > 20,000"


def test_gross_exposure_of_a_reversal_counts_only_the_new_side() -> None:
    # Short 100 -> long 150: gross goes from 10,000 to 15,000, not to 25,000.
    book = Book(qty={"AAPL": -100}, gross=10_000)
    g = gate(book, max_gross_exposure=15_000)
    assert g.check_order(order(250)) is None
    assert g.check_order(order(251)) == "max_gross_exposure: 15,100 > 15,000"


def test_position_limits_see_the_position_after_the_order() -> None:
    book = Book(qty={"AAPL": -100})
    # Buying 150 against a short of 100 leaves 50 long: 5,000, under a 6,000 limit.
    assert gate(book, max_position_value=6_000).check_order(order(150)) is None
    assert gate(book, max_position_qty=50).check_order(order(150)) is None
    assert (
        gate(book, max_position_qty=49).check_order(order(150)) == "max_position_qty: AAPL 50 > 49"
    )


# ----------------------------------------------------------------------- reduce-only


def test_reduce_only_allows_closing_a_one_lot() -> None:
    for held, side in ((1.0, Side.SELL), (-1.0, Side.BUY)):
        g = gate(Book(qty={"AAPL": held}))
        g.reduce_only("desk")
        assert g.check_order(order(1, side)) is None
        assert g.check_order(order(2, side)) is not None  # crossing zero is not reducing


def test_reduces_position_at_its_edges() -> None:
    assert reduces_position(1, -1) and reduces_position(-1, 1)  # closing exactly
    assert reduces_position(0.3, -0.3)
    assert not reduces_position(1, -2) and not reduces_position(-1, 2)  # flips
    assert not reduces_position(0, -1) and not reduces_position(-5, -1)


def test_reducing_orders_skip_the_entry_limits_but_not_the_rate_limit(fake_clock) -> None:
    book = Book(qty={"AAPL": 100}, stale={"AAPL": 30.0}, prices={})
    g = gate(book, fake_clock, max_order_value=1, max_orders_per_second=1)
    # No price, stale feed, worth more than the limit: a sell that shrinks the long still goes.
    assert g.check_order(order(50, Side.SELL)) is None
    assert g.check_order(order(50, Side.SELL)) == "max_orders_per_second: 2 > 1"


# ----------------------------------------------------------------- prices at 0 or under $1


def test_a_last_price_of_zero_cannot_value_an_entry() -> None:
    g = gate(Book(prices={"AAPL": 0.0}))
    assert g.check_order(order(1)) == "no_price: no last price for AAPL to value the order"
    # a limit price values the order; the collar has no last price to measure from
    assert g.check_order(order(1, typ=OrderType.LIMIT, lmt=0.5)) is None


def test_a_non_finite_or_negative_reference_price_cannot_value_an_entry() -> None:
    for px in (float("nan"), float("inf"), -1.0):
        g = gate(Book(prices={}))
        got = g.check_order(order(1, signal_price=px))
        assert got == "no_price: no last price for AAPL to value the order", px


def test_a_penny_stock_is_valued_and_collared_like_any_other() -> None:
    book = Book(prices={"PENY": 0.5})
    peny = Stock("PENY")
    assert gate(book, max_order_value=50).check_order(order(100, inst=peny)) is None
    assert (
        gate(book, max_order_value=49).check_order(order(100, inst=peny))
        == "max_order_value: 50.00 > 49.00"
    )
    g = gate(book, price_collar_pct=5.0)
    assert g.check_order(order(100, inst=peny, typ=OrderType.LIMIT, lmt=0.52)) is None
    assert g.check_order(order(100, inst=peny, typ=OrderType.LIMIT, lmt=0.53)) == (
        "price_collar: limit 0.53 is 6.0% from last 0.50 > 5%"
    )


def test_the_collar_is_inclusive_at_its_edge() -> None:
    g = gate(price_collar_pct=5.0)
    assert g.check_order(order(1, typ=OrderType.LIMIT, lmt=95.0)) is None
    assert g.check_order(order(1, typ=OrderType.STOP, stp=105.0)) is None
    assert g.check_order(order(1, typ=OrderType.STOP, stp=94.9)) == (
        "price_collar: stop 94.90 is 5.1% from last 100.00 > 5%"
    )


# --------------------------------------------------------------------- rate limit


def test_an_order_exactly_one_second_old_leaves_the_rate_window(fake_clock) -> None:
    g = gate(clock=fake_clock, max_orders_per_second=2)
    assert g.check_order(order(1)) is None
    fake_clock.t += 0.25
    assert g.check_order(order(1)) is None
    assert g.check_order(order(1)) == "max_orders_per_second: 3 > 2"
    fake_clock.t += 0.75  # the first order is now exactly a second old
    assert g.orders_per_second() == 1.0
    assert g.check_order(order(1)) is None
    assert g.check_order(order(1)) == "max_orders_per_second: 3 > 2"


def test_refused_orders_do_not_use_up_the_rate_limit(fake_clock) -> None:
    g = gate(clock=fake_clock, max_orders_per_second=1, max_order_value=1_000)
    assert g.check_order(order(11)) == "max_order_value: 1,100 > 1,000"
    assert g.orders_per_second() == 0.0
    assert g.check_order(order(10)) is None


# -------------------------------------------------------------- drawdown and daily loss


def test_drawdown_halt_fires_exactly_at_the_limit() -> None:
    # 100,000 -> 90,000 is a 10% drawdown; in floats 1 - 0.9 is 9.999999999999998%.
    g = gate(max_drawdown_pct=10.0, daily_loss_limit=1e9)
    assert g.update_equity(100_000, T0) is None
    assert g.update_equity(90_000.01, T0 + 1) is None
    assert g.state is TradingState.ACTIVE
    assert g.update_equity(90_000, T0 + 2) == "max_drawdown: 10.00% >= 10%"
    assert g.state is TradingState.HALTED


@pytest.mark.parametrize(("peak", "pct"), [(100_000, 10), (123_456.78, 7.5), (1_000_000, 2.5)])
def test_drawdown_breach_is_exact_at_the_limit_for_any_peak(peak: float, pct: float) -> None:
    floor = round(peak * (1 - pct / 100), 2)
    assert drawdown_breached(floor, peak, pct)
    assert not drawdown_breached(floor + 0.01, peak, pct)
    assert drawdown_breached(floor - 0.01, peak, pct)


def test_drawdown_is_never_breached_without_a_positive_peak() -> None:
    assert not drawdown_breached(-10.0, 0.0, 10.0)
    assert not drawdown_breached(-10.0, -5.0, 10.0)


def test_daily_loss_halt_fires_exactly_at_the_limit() -> None:
    # 1,000.30 - 500.10 is 500.19999999999993 in floats: still exactly the 500.20 limit.
    g = gate(max_drawdown_pct=100.0, daily_loss_limit=500.2)
    assert g.update_equity(1_000.3, T0) is None
    assert g.update_equity(500.11, T0 + 1) is None
    assert g.update_equity(500.1, T0 + 2) == "daily_loss_limit: 500 >= 500"
    assert g.state is TradingState.HALTED


def test_reaches_is_exact_to_the_half_cent() -> None:
    assert reaches(500.19999999999993, 500.2)
    assert reaches(500.2, 500.2) and reaches(500.3, 500.2)
    assert not reaches(500.19, 500.2)


def test_a_drawdown_halt_is_reported_once_and_equity_is_still_recorded() -> None:
    g = gate(max_drawdown_pct=5.0, daily_loss_limit=1e9)
    g.update_equity(100.0, T0)
    assert g.update_equity(95.0, T0 + 1) == "max_drawdown: 5.00% >= 5%"
    assert g.update_equity(80.0, T0 + 2) is None  # already halted
    assert g.equity == 80.0 and list(g.curve) == [100.0, 95.0, 80.0]
    assert g.calculate_max_drawdown() == pytest.approx(0.2)


def test_resume_starts_a_new_drawdown_watch_from_the_current_equity() -> None:
    g = gate(max_drawdown_pct=10.0, daily_loss_limit=1e9)
    g.update_equity(100_000, T0)
    g.update_equity(90_000, T0 + 1)
    assert g.state is TradingState.HALTED
    assert g.resume() and g.peak == 90_000
    assert g.update_equity(81_000.01, T0 + 2) is None
    assert g.update_equity(81_000, T0 + 3) == "max_drawdown: 10.00% >= 10%"


def test_the_first_equity_of_a_trading_day_is_its_start() -> None:
    g = gate(max_drawdown_pct=100.0, daily_loss_limit=1_000)
    assert g.daily_pnl == 0.0  # nothing recorded yet
    g.update_equity(10_000, T0)
    g.update_equity(9_500, T0 + 60)
    assert g.day_start_equity == 10_000 and g.daily_pnl == -500
    g.update_equity(9_400, T0 + 86_400)  # the next trading day
    assert g.day_start_equity == 9_400 and g.daily_pnl == 0.0
    assert g.update_equity(8_400, T0 + 86_460) == "daily_loss_limit: 1,000 >= 1,000"


def test_update_equity_uses_the_gates_clock_without_a_timestamp() -> None:
    now = [T0]
    g = gate(clock=lambda: now[0], max_drawdown_pct=100.0, daily_loss_limit=1_000)
    g.update_equity(10_000)
    now[0] = T0 + 86_400
    g.update_equity(9_500)  # a new day by the clock: no loss carried over
    assert g.day_start_equity == 9_500 and g.daily_pnl == 0.0


def test_trading_days_roll_at_the_exchange_close() -> None:
    # A loss taken after the close counts against the next session's limit, and a DAY order
    # placed after the close is for the next session. NYSE closes at 16:00 New York: 21:00 UTC
    # in winter (this date), 20:00 UTC in summer.
    roll = dt.datetime(2024, 3, 5, 21, 0, tzinfo=dt.UTC).timestamp()
    assert trading_day(roll - 1) == dt.date(2024, 3, 5)
    assert trading_day(roll) == trading_day(roll + 86_399) == dt.date(2024, 3, 6)
    assert trading_day(roll + 86_400) == dt.date(2024, 3, 7)
    summer = dt.datetime(2024, 7, 9, 20, 0, tzinfo=dt.UTC).timestamp()
    assert trading_day(summer - 1) == dt.date(2024, 7, 9)
    assert trading_day(summer) == dt.date(2024, 7, 10)
    g = gate(max_drawdown_pct=100.0, daily_loss_limit=1_000)
    g.update_equity(10_000, roll - 3_600)  # 20:00 UTC: the session is open
    g.update_equity(9_800, roll - 60)
    assert g.day_start_equity == 10_000 and g.daily_pnl == -200
    g.update_equity(9_800, roll + 60)  # 21:01 UTC: a new trading day starts here
    assert g.day_start_equity == 9_800 and g.daily_pnl == 0.0


def test_max_drawdown_of_curves_that_never_peak_above_zero() -> None:
    assert max_drawdown([0.0, -5.0, -1.0]) == 0.0
    assert max_drawdown([-1.0, 100.0, 50.0]) == pytest.approx(0.5)
    assert max_drawdown([100.0]) == 0.0


# --------------------------------------------------------------------------- the gauges


def test_drawdown_gauge_shows_a_breach_exactly_at_the_limit() -> None:
    g = gate(max_drawdown_pct=10.0, daily_loss_limit=1e9)
    g.update_equity(100_000, T0)
    g.update_equity(90_000, T0 + 1)
    dd = {x.name: x for x in g.gauges(gross_exposure=0.0)}["drawdown"]
    assert dd.level == "breach" and dd.text == "10.00% / 10%" and dd.limit == 10.0


def test_gauges_show_values_limits_and_levels() -> None:
    g = gate(
        max_drawdown_pct=10.0, daily_loss_limit=1_000, max_gross_exposure=10_000, warn_fraction=0.8
    )
    g.update_equity(10_000, T0)
    g.update_equity(9_150, T0 + 1)  # 8.5% down, 850 lost today
    g.check_order(order(1))
    gauges = {x.name: x for x in g.gauges(gross_exposure=7_999.0)}
    assert gauges["drawdown"].value == pytest.approx(8.5) and gauges["drawdown"].level == "warn"
    assert gauges["daily loss"].value == pytest.approx(850) and gauges["daily loss"].level == "warn"
    assert gauges["daily loss"].text == "850 / 1,000"
    assert gauges["gross exposure"].level == "ok" and gauges["gross exposure"].limit == 10_000
    assert gauges["gross exposure"].text == "7,999 / 10,000"
    assert gauges["orders/s"].value == 1.0 and gauges["orders/s"].text == "1 / 1000"
    g.update_equity(10_200, T0 + 2)  # a gain today: no loss shown
    assert {x.name: x for x in g.gauges(0.0)}["daily loss"].value == 0.0


def test_gauge_levels_at_their_edges() -> None:
    assert level_of(80.0, 100.0, 0.8) == "warn"
    assert level_of(79.99, 100.0, 0.8) == "ok"
    assert level_of(100.0, 100.0, 0.8) == "breach"
    assert level_of(5.0, 0.0, 0.8) == "ok"  # no limit set: never amber


# ------------------------------------------------------------------- without a market view


def test_a_gate_without_a_market_view_values_orders_by_their_own_prices() -> None:
    g = PortfolioLevelRisk(RiskConfig(max_order_value=1_000, max_position_qty=10), None)
    assert g.check_order(order(10, typ=OrderType.LIMIT, lmt=100.0)) is None  # 1,000 and 10
    assert g.check_order(order(11, typ=OrderType.LIMIT, lmt=90.0)) == (
        "max_position_qty: AAPL 11 > 10"
    )
    assert g.check_order(order(5, signal_price=250.0)) == "max_order_value: 1,250 > 1,000"
    assert g.check_order(order(1)) == "no_price: no last price for AAPL to value the order"


# ------------------------------------------------------------------- states and reasons


def test_a_halt_without_a_reason_names_the_operator() -> None:
    g = gate()
    g.halt_trading("")
    assert g.check_order(order(1)) == "halted: trading is HALTED (operator)"


def test_resume_clears_the_reason_and_tells_the_listener() -> None:
    heard: list[tuple[TradingState, str]] = []
    g = PortfolioLevelRisk(
        RiskConfig(), Book(), clock=lambda: T0, on_state_change=lambda s, r: heard.append((s, r))
    )
    g.halt_trading("manual")
    g.resume()
    assert g.reason == "" and heard == [(TradingState.HALTED, "manual"), (TradingState.ACTIVE, "")]


def test_a_daily_loss_halt_keeps_its_reason() -> None:
    g = gate(max_drawdown_pct=100.0, daily_loss_limit=100)
    g.update_equity(1_000, T0)
    reason = g.update_equity(900, T0 + 1)
    assert reason == "daily_loss_limit: 100 >= 100" and g.reason == reason


def test_max_drawdown_of_a_given_curve_is_not_the_live_one() -> None:
    g = gate()
    for eq in (100.0, 110.0, 120.0):
        g.update_equity(eq, T0)
    assert g.calculate_max_drawdown() == 0.0
    assert g.calculate_max_drawdown([10.0, 5.0]) == pytest.approx(0.5)


def test_drawdown_of_a_tiny_or_empty_account() -> None:
    assert drawdown_breached(0.45, 0.5, 10.0)  # an account under a dollar still halts
    assert drawdown_now(0.45, 0.5) == pytest.approx(0.1)
    assert drawdown_now(0.0, 0.0) == 0.0 and drawdown_now(-5.0, -10.0) == 0.0


def test_reaches_counts_a_loss_within_half_a_cent() -> None:
    assert reaches(10.0 - 0.005, 10.0) and not reaches(10.0 - 0.0051, 10.0)


def test_a_limit_of_one_still_shows_its_breach() -> None:
    assert level_of(1.0, 1.0, 0.8) == "breach" and level_of(0.8, 1.0, 0.8) == "warn"


def test_every_gauge_carries_its_limit_and_value() -> None:
    g = gate(daily_loss_limit=2_000, max_gross_exposure=50_000, max_orders_per_second=7)
    gauges = {x.name: x for x in g.gauges(gross_exposure=1_234.0)}
    assert gauges["daily loss"].limit == 2_000
    assert gauges["gross exposure"].value == 1_234.0 and gauges["gross exposure"].limit == 50_000
    assert gauges["orders/s"].limit == 7


def test_a_fresh_gate_reports_nothing_lost_and_nothing_breached() -> None:
    g = gate()
    assert (g.state, g.reason, g.equity, g.peak, g.daily_pnl) == (
        TradingState.ACTIVE,
        "",
        0.0,
        0.0,
        0.0,
    )
    gauges = {x.name: x for x in g.gauges(0.0)}
    assert gauges["drawdown"].value == 0.0 and gauges["drawdown"].level == "ok"


def test_the_live_equity_curve_keeps_the_last_100000_points() -> None:
    g = gate(max_drawdown_pct=100.0, daily_loss_limit=1e12)
    for i in range(100_001):
        g.curve.append(float(i))
    assert len(g.curve) == 100_000 and g.curve[0] == 1.0


def test_the_drawdown_of_an_empty_or_negative_curve_is_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert max_drawdown([0.0, -1.0, 0.0]) == 0.0


def test_a_reversal_to_the_same_size_is_not_growth_for_the_strategy_limit() -> None:
    book = Book(qty={"AAPL": 700}, sqty={("s1", "AAPL"): 700})
    g = gate(book, max_strategy_position_value=60_000)
    assert g.check_order(order(1_400, Side.SELL)) is None  # 700 long -> 700 short
    assert g.check_order(order(1_401, Side.SELL)) == (
        "max_strategy_position_value: s1 AAPL 70,100 > 60,000"
    )
