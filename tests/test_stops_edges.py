"""Stop-loss, take-profit and trailing stops at their edges: exactly at the level, a 1-lot, a
short, a flat position, prices of 0 or under $1 (the rules in :mod:`fbterm.risk.stops` and
their per-strategy watcher :mod:`fbterm.risk.strategy`).

Each test names what a trader would lose; they were written against the mutants the rest of
the suite let through (README "Mutation testing")."""

from __future__ import annotations

import math

import pytest

from fbterm.config import StrategyRiskConfig
from fbterm.model import Fill, OrderType, Position, Side, Stock
from fbterm.risk.stops import (
    StopRules,
    money,
    stop_loss_hit,
    take_profit_hit,
    trailing_stop_hit,
)
from fbterm.risk.strategy import StrategyLevelRisk

T0 = 1_700_000_000.0
AAPL = Stock("AAPL")


def held(qty: float, cost: float = 100.0) -> Position:
    side = Side.BUY if qty > 0 else Side.SELL
    return Position(AAPL).apply_fill(Fill("F", "O", AAPL, side, abs(qty), cost, 0.0, T0, "s1"))


def cfg(**kw: float) -> StrategyRiskConfig:
    return StrategyRiskConfig(**kw)


# ------------------------------------------------------------------------ per-price rules


def test_a_stop_loss_fires_exactly_at_its_level() -> None:
    assert stop_loss_hit(held(10), 90.0, cfg(stop_loss_pct=10)) == "stop_loss: -10.00% <= -10%"
    assert stop_loss_hit(held(10), 90.01, cfg(stop_loss_pct=10)) is None


def test_a_take_profit_fires_exactly_at_its_amount() -> None:
    # long 10 from 100: +250 at 125
    assert take_profit_hit(held(10), 125.0, cfg(take_profit_abs=250)) == (
        "take_profit: P&L 250 >= 250"
    )
    assert take_profit_hit(held(10), 124.99, cfg(take_profit_abs=250)) is None


def test_percent_stops_on_a_short_measure_the_move_against_it() -> None:
    short = held(-10)
    assert stop_loss_hit(short, 110.0, cfg(stop_loss_pct=10)) == "stop_loss: -10.00% <= -10%"
    assert stop_loss_hit(short, 90.0, cfg(stop_loss_pct=10)) is None
    assert take_profit_hit(short, 80.0, cfg(take_profit_pct=20)) == ("take_profit: 20.00% >= 20%")
    assert take_profit_hit(short, 120.0, cfg(take_profit_pct=20)) is None


def test_percent_stops_on_a_one_lot() -> None:
    one = held(1)
    assert stop_loss_hit(one, 95.0, cfg(stop_loss_pct=5)) == "stop_loss: -5.00% <= -5%"
    assert take_profit_hit(one, 105.0, cfg(take_profit_pct=5)) == "take_profit: 5.00% >= 5%"
    assert take_profit_hit(one, 95.0, cfg(take_profit_pct=5)) is None


def test_a_penny_stock_stop_fires_and_a_zero_price_never_does() -> None:
    penny = held(1000, cost=1.0)
    assert stop_loss_hit(penny, 0.5, cfg(stop_loss_pct=10)) == "stop_loss: -50.00% <= -10%"
    assert take_profit_hit(penny, 1.5, cfg(take_profit_pct=10)) == ("take_profit: 50.00% >= 10%")
    # A zero or negative print is a bad tick, not a 100% loss to sell into.
    assert stop_loss_hit(penny, 0.0, cfg(stop_loss_pct=10)) is None
    assert take_profit_hit(held(-10), 0.0, cfg(take_profit_pct=10)) is None
    # a short penny stock's take-profit fires under a dollar
    assert take_profit_hit(held(-1000, cost=1.0), 0.5, cfg(take_profit_pct=10)) == (
        "take_profit: 50.00% >= 10%"
    )


def test_a_flat_position_never_triggers_whatever_its_old_cost() -> None:
    flat = Position(AAPL, quantity=0.0, avg_cost=100.0)
    assert stop_loss_hit(flat, 150.0, cfg(stop_loss_pct=10)) is None
    assert take_profit_hit(flat, 50.0, cfg(take_profit_pct=10)) is None


def test_percent_rules_need_a_cost_but_amount_rules_do_not() -> None:
    free = Position(AAPL, quantity=10.0, avg_cost=0.0)  # e.g. shares received at no cost
    assert take_profit_hit(free, 5.0, cfg(take_profit_pct=10)) is None
    assert stop_loss_hit(free, 5.0, cfg(stop_loss_pct=10)) is None
    assert take_profit_hit(free, 5.0, cfg(take_profit_abs=50)) == "take_profit: P&L 50.00 >= 50.00"


def test_trailing_stops_fire_exactly_at_their_level_on_either_side() -> None:
    assert trailing_stop_hit(1, 100.0, 90.0, 10) == "trailing_stop: 90.00 <= 100.00 - 10%"
    assert trailing_stop_hit(1, 100.0, 90.01, 10) is None
    assert trailing_stop_hit(-1, 100.0, 125.0, 25) == "trailing_stop: 125.00 >= 100.00 + 25%"
    assert trailing_stop_hit(-1, 100.0, 124.8, 25) is None
    assert trailing_stop_hit(0, 100.0, 50.0, 10) is None  # nothing held
    assert trailing_stop_hit(0, 100.0, 150.0, 10) is None


def test_money_drops_the_cents_from_100() -> None:
    assert money(100) == "100" and money(-100) == "-100" and money(1234.5) == "1,234"
    assert money(99.99) == "99.99" and money(-0.5) == "-0.50"


# ----------------------------------------------------------------------- per-bar levels


def test_stop_rules_from_config_keep_every_setting() -> None:
    rules = StopRules.from_config(
        cfg(
            stop_loss_pct=1,
            stop_loss_abs=2,
            take_profit_pct=3,
            take_profit_abs=4,
            trailing_stop_pct=5,
        )
    )
    assert rules == StopRules(1, 2, 3, 4, 5)
    assert StopRules.from_config(None) is None and StopRules.from_config(cfg()) is None


@pytest.mark.parametrize(
    ("rules", "long_levels", "short_levels"),
    [
        (StopRules(10, None, None, None, None), (90.0, math.nan), (110.0, math.nan)),
        (StopRules(None, 5, None, None, None), (95.0, math.nan), (105.0, math.nan)),
        (StopRules(None, None, None, None, 20), (120.0, math.nan), (60.0, math.nan)),
        (StopRules(None, None, 10, None, None), (math.nan, 110.0), (math.nan, 90.0)),
        (StopRules(None, None, None, 5, None), (math.nan, 105.0), (math.nan, 95.0)),
    ],
)
def test_each_stop_rule_alone_sets_its_level(
    rules: StopRules, long_levels: tuple[float, float], short_levels: tuple[float, float]
) -> None:
    # entered at 100; the best price since is 150 for the long, 50 for the short
    assert rules.levels(True, 100.0, 150.0) == pytest.approx(long_levels, nan_ok=True)
    assert rules.levels(False, 100.0, 50.0) == pytest.approx(short_levels, nan_ok=True)


def test_several_rules_the_tightest_stop_and_the_nearest_target_win() -> None:
    rules = StopRules(10, 5, 10, 5, 20)
    assert rules.levels(True, 100.0, 150.0) == pytest.approx((120.0, 105.0))
    assert rules.levels(False, 100.0, 50.0) == pytest.approx((60.0, 95.0))


# ------------------------------------------------------------- the per-strategy watcher


def test_the_watcher_is_active_only_with_a_rule() -> None:
    assert StrategyLevelRisk("s1").active is False
    assert StrategyLevelRisk("s1", cfg(take_profit_abs=1)).active is True


def test_an_exit_is_a_market_order_at_the_price_and_time_that_fired_it() -> None:
    r = StrategyLevelRisk("s1", cfg(stop_loss_pct=5))
    sig = r.on_price(held(1), 95.0, T0 + 7)
    assert sig is not None
    assert (sig.side, sig.quantity, sig.order_type) == (Side.SELL, 1, OrderType.MARKET)
    assert (sig.signal_price, sig.ts, sig.strategy_id) == (95.0, T0 + 7, "s1")
    assert sig.instrument == AAPL and sig.reason == "stop_loss: -5.00% <= -5%"
    r = StrategyLevelRisk("s1", cfg(take_profit_pct=5))
    tp = r.on_price(held(-1), 95.0, T0 + 8)
    assert tp is not None and (tp.side, tp.signal_price, tp.ts) == (Side.BUY, 95.0, T0 + 8)
    untimed = StrategyLevelRisk("s1", cfg(take_profit_pct=5)).on_price(held(1), 105.0)
    assert untimed is not None and isinstance(untimed.ts, float) and untimed.ts > T0


def test_one_exit_at_a_time_until_it_is_done() -> None:
    r = StrategyLevelRisk("s1", cfg(stop_loss_pct=5, take_profit_pct=5))
    assert r.on_price(held(10), 94.0, T0) is not None
    # the take-profit must not send a second closing order while the first is working
    assert r.apply_take_profit(held(10), 120.0, T0 + 1) is None
    r.exit_done("AAPL")
    assert r.apply_take_profit(held(10), 120.0, T0 + 2) is not None


def trail(r: StrategyLevelRisk, pos: Position, path: list[float]) -> int | None:
    for i, px in enumerate(path):
        if r.on_price(pos, px, T0 + i) is not None:
            return i
    return None


def test_a_one_lot_trailing_stop_follows_the_high() -> None:
    r = StrategyLevelRisk("s1", cfg(trailing_stop_pct=10))
    assert trail(r, held(1), [110, 120, 109, 107.9]) == 3  # 10% under 120 is 108


def test_a_short_trailing_stop_starts_from_the_first_price_under_the_entry() -> None:
    r = StrategyLevelRisk("s1", cfg(trailing_stop_pct=20))
    # short from 100; the first price, 80, is the low-water mark: 20% above is 96
    assert trail(r, held(-10), [80, 95, 97]) == 2


def test_a_new_position_gets_a_new_trailing_watermark() -> None:
    r = StrategyLevelRisk("s1", cfg(trailing_stop_pct=10))
    assert trail(r, held(10), [150]) is None  # high-water mark 150
    r.on_price(Position(AAPL), 150, T0)  # flat: the old mark goes
    # long again from 100: 10% under the new entry is 90, not 10% under 150
    assert trail(r, held(10), [100, 120]) is None
    assert trail(r, held(10), [108.5]) is None
    assert trail(r, held(10), [107.9]) == 0


def test_a_reversal_gets_a_new_trailing_watermark() -> None:
    r = StrategyLevelRisk("s1", cfg(trailing_stop_pct=10))
    assert trail(r, held(10), [150]) is None  # long: high-water mark 150
    # now short from 100: the low-water mark starts at the entry, not at the long's 150
    assert trail(r, held(-10), [100, 105]) is None
    assert trail(r, held(-10), [111]) == 0


def test_a_trailing_stop_never_starts_behind_the_entry() -> None:
    # The first price goes against the position: the mark is the entry, not that price.
    r = StrategyLevelRisk("s1", cfg(trailing_stop_pct=10))
    assert trail(r, held(-10), [105, 109.9]) is None  # short from 100
    assert trail(r, held(-10), [110.01]) == 0  # past 10% above the entry
    r = StrategyLevelRisk("s1", cfg(trailing_stop_pct=10))
    assert trail(r, held(1), [95, 90.1]) is None  # a 1-lot long from 100
    assert trail(r, held(1), [90]) == 0
