"""Risk: every pre-trade rule with its reason, the three trading states, exits on price paths,
drawdown and daily-loss halts."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from fbterm.config import RiskConfig, StrategyRiskConfig
from fbterm.model import Fill, Option, Order, OrderType, Position, Right, Side, Stock, TradingState
from fbterm.risk.portfolio import (
    PortfolioLevelRisk,
    drawdown_now,
    max_drawdown,
    reduces_position,
)
from fbterm.risk.strategy import StrategyLevelRisk

T0 = 1_700_000_000.0  # 2023-11-14 22:13 UTC


@dataclass
class Book:
    """The engine's state as the gate reads it (the RiskInputs protocol), as plain data.

    Not a mock of our code: the protocol is the gate's only input, and the engine's own
    implementation is exercised in test_engine.py."""

    prices: dict[str, float] = field(default_factory=lambda: {"AAPL": 100.0, "MSFT": 400.0})
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
    book: Book | None = None, clock: Callable[[], float] | None = None, **limits
) -> PortfolioLevelRisk:
    cfg = RiskConfig(**{"max_orders_per_second": 1000.0, **limits})
    return PortfolioLevelRisk(cfg, book or Book(), clock=clock or (lambda: T0))


def order(
    qty: float,
    side: Side = Side.BUY,
    sym: str = "AAPL",
    typ: OrderType = OrderType.MARKET,
    lmt: float | None = None,
    stp: float | None = None,
    sid: str = "s1",
    inst=None,
) -> Order:
    return Order(
        "O", inst or Stock(sym), side, qty, typ, limit_price=lmt, stop_price=stp, strategy_id=sid
    )


# --------------------------------------------------------------------------- the rules


def test_max_order_value_names_the_rule_and_numbers():
    g = gate(max_order_value=20_000)
    assert g.check_order(order(200)) is None  # 20,000: at the limit passes
    assert g.check_order(order(253)) == "max_order_value: 25,300 > 20,000"
    # a limit price values the order, not the last price
    assert g.check_order(order(210, typ=OrderType.LIMIT, lmt=95.0)) is None
    assert (
        g.check_order(order(211, typ=OrderType.LIMIT, lmt=95.0))
        == "max_order_value: 20,045 > 20,000"
    )


def test_max_position_qty_and_value():
    book = Book(qty={"AAPL": 900})
    assert (
        gate(book, max_position_qty=1000).check_order(order(101))
        == "max_position_qty: AAPL 1,001 > 1,000"
    )
    assert gate(book, max_position_qty=1000).check_order(order(100)) is None
    assert (
        gate(book, max_position_value=100_000).check_order(order(150))
        == "max_position_value: AAPL 105,000 > 100,000"
    )


def test_max_strategy_position_value_only_blocks_growth():
    book = Book(qty={"AAPL": 500}, sqty={("s1", "AAPL"): 500})
    g = gate(book, max_strategy_position_value=60_000)
    assert g.check_order(order(150)) == "max_strategy_position_value: s1 AAPL 65,000 > 60,000"
    assert g.check_order(order(150, sid="s2")) is None  # another strategy's own position is small
    # over the per-strategy limit already: an order that shrinks it is not blocked by this rule
    book.sqty[("s1", "AAPL")] = 700
    assert g.check_order(order(100, Side.SELL)) is None


def test_max_gross_exposure():
    g = gate(Book(gross=190_000), max_gross_exposure=200_000)
    assert g.check_order(order(100)) is None
    assert g.check_order(order(101)) == "max_gross_exposure: 200,100 > 200,000"


@pytest.mark.parametrize(
    ("typ", "lmt", "stp", "reason"),
    [
        (OrderType.LIMIT, 106.0, None, "price_collar: limit 106.00 is 6.0% from last 100.00 > 5%"),
        (OrderType.LIMIT, 94.0, None, "price_collar: limit 94.00 is 6.0% from last 100.00 > 5%"),
        (OrderType.STOP, None, 107.5, "price_collar: stop 107.50 is 7.5% from last 100.00 > 5%"),
        (
            OrderType.STOP_LIMIT,
            104.0,
            80.0,
            "price_collar: stop 80.00 is 20.0% from last 100.00 > 5%",
        ),
        (OrderType.LIMIT, 105.0, None, None),
        (OrderType.MARKET, None, None, None),
    ],
)
def test_price_collar(typ, lmt, stp, reason):
    assert gate(price_collar_pct=5.0).check_order(order(10, typ=typ, lmt=lmt, stp=stp)) == reason


def test_max_orders_per_second_counts_accepted_orders_in_a_sliding_second(fake_clock):
    clock = fake_clock
    g = gate(clock=clock, max_orders_per_second=3)
    assert [g.check_order(order(1)) for _ in range(3)] == [None] * 3
    assert g.check_order(order(1)) == "max_orders_per_second: 4 > 3"
    assert g.orders_per_second() == 3
    clock.t += 0.5
    assert g.check_order(order(1)) == "max_orders_per_second: 4 > 3"
    clock.t += 0.51  # the first three are now more than a second old
    assert g.check_order(order(1)) is None


def test_stale_data_blocks_entries_but_not_exits():
    book = Book(qty={"AAPL": 10}, stale={"AAPL": 12.34})
    g = gate(book)
    assert g.check_order(order(5)) == "stale_data: AAPL has had no update for 12.3 s"
    assert g.check_order(order(5, Side.SELL)) is None  # getting out is always allowed
    assert g.check_order(order(5, sym="MSFT")) is None
    opt = Option("AAPL", Right.CALL, 120.0, dt.date(2030, 1, 18))
    assert g.check_order(order(1, inst=opt)).startswith(
        "stale_data: AAPL"
    )  # options on a stale underlying


def test_no_price_no_entry():
    assert (
        gate().check_order(order(1, sym="ZZZ"))
        == "no_price: no last price for ZZZ to value the order"
    )


# ------------------------------------------------------------------------ trading states


def test_active_reducing_halted_semantics():
    book = Book(qty={"AAPL": 100, "MSFT": -10}, sqty={("s1", "AAPL"): 100})
    states: list[tuple[TradingState, str]] = []
    g = PortfolioLevelRisk(
        RiskConfig(), book, clock=lambda: T0, on_state_change=lambda s, r: states.append((s, r))
    )
    assert g.state is TradingState.ACTIVE
    assert g.reduce_only("desk says so")
    assert g.check_order(order(50, Side.SELL)) is None  # shrinks AAPL
    assert g.check_order(order(5)) == "reduce_only: order would grow AAPL from 100 to 105"
    assert (
        g.check_order(order(150, Side.SELL)) == "reduce_only: order would grow AAPL from 100 to -50"
    )
    assert g.check_order(order(10, sym="MSFT")) is None  # covers the short
    assert not g.reduce_only("again")  # only from ACTIVE
    assert g.halt_trading("manual")
    assert not g.halt_trading("manual")
    assert g.check_order(order(50, Side.SELL)) == "halted: trading is HALTED (manual)"
    # the operator's own closing orders may reduce while HALTED; nothing may grow
    assert g.check_order(order(50, Side.SELL), operator=True) is None
    assert g.check_order(order(5), operator=True) == "halted: trading is HALTED (manual)"
    assert g.resume() and g.state is TradingState.ACTIVE and not g.resume()
    assert g.check_order(order(5)) is None
    assert [s for s, _ in states] == [
        TradingState.REDUCING,
        TradingState.HALTED,
        TradingState.ACTIVE,
    ]
    assert states[0][1] == "desk says so"


def test_reduces_position():
    assert reduces_position(100, -50) and reduces_position(-10, 10)
    assert not reduces_position(100, -150)  # crosses zero
    assert not reduces_position(0, 1) and not reduces_position(10, 1)


# ---------------------------------------------------------------------- drawdown & loss


def test_max_drawdown_against_a_hand_computation():
    curve = [100, 120, 90, 95, 130, 104, 140, 70]
    # peaks:  100 120 120 120 130 130 140 140 -> drawdowns 0 0 .25 .2083 0 .2 0 .5
    assert max_drawdown(curve) == pytest.approx(0.5)
    assert max_drawdown([100, 120, 90, 95, 130, 104]) == pytest.approx(0.25)
    assert max_drawdown([1, 2, 3]) == 0.0 and max_drawdown([]) == 0.0
    assert drawdown_now(90, 120) == pytest.approx(0.25) and drawdown_now(130, 120) == 0.0
    g = gate()
    for eq in curve:
        g.update_equity(eq * 1000, T0)
    assert g.calculate_max_drawdown() == pytest.approx(0.5)
    assert g.calculate_max_drawdown([10, 5, 10]) == pytest.approx(0.5)


def test_drawdown_breach_halts_and_resume_resets_the_watch():
    g = gate(max_drawdown_pct=10.0, daily_loss_limit=1e9)
    assert g.update_equity(100_000, T0) is None
    assert g.update_equity(110_000, T0 + 1) is None
    assert g.update_equity(99_500, T0 + 2) is None  # 9.55%
    reason = g.update_equity(98_900, T0 + 3)  # 10.09%
    assert reason == "max_drawdown: 10.09% >= 10%"
    assert g.state is TradingState.HALTED and g.reason == reason
    assert g.check_order(order(1)).startswith("halted: trading is HALTED (max_drawdown")
    assert g.update_equity(90_000, T0 + 4) is None  # already halted: no second halt
    g.resume()
    assert g.update_equity(89_000, T0 + 5) is None  # 1.1% from the new peak of 90,000


def test_daily_loss_halt_and_day_roll():
    g = gate(max_drawdown_pct=99.0, daily_loss_limit=5_000)
    day1 = T0  # 22:13 UTC: after the NYSE close (16:00 New York = 21:00 UTC in November)
    assert g.update_equity(200_000, day1) is None
    assert g.update_equity(196_000, day1 + 60) is None
    assert g.daily_pnl == -4_000
    # the next trading day starts at tomorrow's close: losses before it still count
    next_day = day1 + 86_400
    assert g.update_equity(194_000, next_day) is None  # new day: starts at 194,000
    assert g.daily_pnl == 0.0
    assert g.update_equity(189_500, next_day + 60) is None  # 4,500 down today
    assert g.update_equity(189_000, next_day + 120) == "daily_loss_limit: 5,000 >= 5,000"
    assert g.state is TradingState.HALTED


def test_gauges_levels():
    g = gate(max_drawdown_pct=10.0, warn_fraction=0.8, max_gross_exposure=1000)
    g.update_equity(100.0, T0)
    g.update_equity(91.0, T0 + 1)  # 9%: amber
    gauges = {x.name: x for x in g.gauges(gross_exposure=1200)}
    assert gauges["drawdown"].level == "warn"
    assert gauges["gross exposure"].level == "breach"
    assert gauges["orders/s"].level == "ok"


# ------------------------------------------------------------------------ strategy level


def long_position(qty: float = 100, cost: float = 100.0, inst=None) -> Position:
    inst = inst or Stock("AAPL")
    side = Side.BUY if qty > 0 else Side.SELL
    return Position(inst).apply_fill(Fill("F", "O", inst, side, abs(qty), cost, 0.0, T0, "s1"))


def first_trigger(risk: StrategyLevelRisk, pos: Position, path: list[float]):
    for i, px in enumerate(path):
        sig = risk.on_price(pos, px, T0 + i)
        if sig is not None:
            return i, sig
    return None, None


def test_stop_loss_pct_triggers_at_the_right_bar():
    r = StrategyLevelRisk("s1", StrategyRiskConfig(stop_loss_pct=5.0))
    i, sig = first_trigger(r, long_position(), [99, 97, 95.5, 95.01, 94.99, 90])
    assert i == 4
    assert (sig.side, sig.quantity, sig.order_type) == (Side.SELL, 100, OrderType.MARKET)
    assert sig.reason == "stop_loss 5%: 94.99 <= 95.00" and sig.strategy_id == "s1"
    assert r.on_price(long_position(), 90) is None  # exiting: one closing order, not one per tick
    r.exit_done("AAPL")
    assert r.on_price(long_position(), 90) is not None


def test_stop_loss_on_a_short_in_money_and_in_points():
    r = StrategyLevelRisk("s1", StrategyRiskConfig(stop_loss_money=300.0))
    i, sig = first_trigger(r, long_position(-100), [101, 102, 102.99, 103, 104])
    assert i == 3 and sig.side is Side.BUY and sig.reason == "stop_loss 300: 103.00 >= 103.00"
    # the same distance in price points: 3.00 per share whatever the size
    r = StrategyLevelRisk("s1", StrategyRiskConfig(stop_loss_points=3.0))
    i, sig = first_trigger(r, long_position(-7), [101, 102.99, 103, 104])
    assert i == 2 and sig.reason == "stop_loss 3 points: 103.00 >= 103.00"


def test_take_profit_triggers_at_the_right_bar():
    r = StrategyLevelRisk("s1", StrategyRiskConfig(take_profit_pct=10.0))
    i, sig = first_trigger(r, long_position(), [101, 105, 109.99, 110, 111])
    assert i == 3 and sig.reason == "take_profit 10%: 110.00 >= 110.00"
    r = StrategyLevelRisk("s1", StrategyRiskConfig(take_profit_money=250.0))
    i, sig = first_trigger(r, long_position(-50), [99, 96, 95.1, 94.9])  # short 50 from 100: +255
    assert i == 3 and sig.side is Side.BUY


def test_trailing_stop_follows_the_high_water_mark():
    r = StrategyLevelRisk("s1", StrategyRiskConfig(trailing_stop_pct=5.0))
    # up to 120, then back: 5% below 120 is 114
    i, sig = first_trigger(r, long_position(), [102, 110, 120, 116, 114.01, 113.99, 100])
    assert i == 5 and sig.reason == "trailing_stop 5%: 113.99 <= 114.00"
    # short: low-water mark 80, triggers at 84 or above
    r = StrategyLevelRisk("s1", StrategyRiskConfig(trailing_stop_pct=5.0))
    i, sig = first_trigger(r, long_position(-10), [95, 80, 83.9, 84.0])
    assert i == 3 and sig.side is Side.BUY
    # never above the entry: a stop that trails from the entry when price never rose
    r = StrategyLevelRisk("s1", StrategyRiskConfig(trailing_stop_pct=5.0))
    i, _ = first_trigger(r, long_position(), [99, 96, 95.01, 94.99])
    assert i == 3


def test_inactive_risk_never_triggers_and_flat_resets():
    r = StrategyLevelRisk("s1")
    assert not r.active
    assert first_trigger(r, long_position(), [1, 1000]) == (None, None)
    flat = Position(Stock("AAPL"))
    r2 = StrategyLevelRisk("s1", StrategyRiskConfig(stop_loss_pct=1.0))
    assert r2.on_price(long_position(), 50) is not None
    assert r2.on_price(flat, 50) is None  # flat: the exit is done, watch afresh
    assert r2.on_price(long_position(), 50) is not None


def test_option_position_stop_uses_the_multiplier():
    opt = Option("AAPL", Right.CALL, 120.0, dt.date(2030, 1, 18))
    r = StrategyLevelRisk("s1", StrategyRiskConfig(stop_loss_money=100.0))
    pos = long_position(2, 3.0, inst=opt)  # 2 contracts: 200 per 1.00 move
    assert r.on_price(pos, 2.51) is None
    sig = r.on_price(pos, 2.5)
    assert sig is not None and sig.instrument == opt and sig.quantity == 2
