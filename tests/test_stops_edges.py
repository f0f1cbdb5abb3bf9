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
from fbterm.risk.stops import StopRules, money, price_exit
from fbterm.risk.strategy import StrategyLevelRisk

T0 = 1_700_000_000.0
AAPL = Stock("AAPL")


def held(qty: float, cost: float = 100.0) -> Position:
    side = Side.BUY if qty > 0 else Side.SELL
    return Position(AAPL).apply_fill(Fill("F", "O", AAPL, side, abs(qty), cost, 0.0, T0, "s1"))


def cfg(**kw: float) -> StrategyRiskConfig:
    return StrategyRiskConfig(**kw)


# ------------------------------------------------------------------------ per-price rules
# One rule for live and backtest (issue 15): price_exit names the rule, its unit and the
# level; the levels come from StopRules.levels.


def hit(pos: Position, price: float, best: float | None = None, **kw: float) -> str | None:
    rules = StopRules.from_config(cfg(**kw))
    assert rules is not None
    return price_exit(rules, pos, price, pos.avg_cost if best is None else best)


def test_a_stop_loss_fires_exactly_at_its_level() -> None:
    assert hit(held(10), 90.0, stop_loss_pct=10) == "stop_loss 10%: 90.00 <= 90.00"
    assert hit(held(10), 90.01, stop_loss_pct=10) is None


def test_a_money_take_profit_fires_exactly_at_its_amount() -> None:
    # long 10 from 100: +250 at 125
    assert hit(held(10), 125.0, take_profit_money=250) == "take_profit 250: 125.00 >= 125.00"
    assert hit(held(10), 124.99, take_profit_money=250) is None


def test_percent_stops_on_a_short_measure_the_move_against_it() -> None:
    short = held(-10)
    assert hit(short, 110.0, stop_loss_pct=10) == "stop_loss 10%: 110.00 >= 110.00"
    assert hit(short, 90.0, stop_loss_pct=10) is None
    assert hit(short, 80.0, take_profit_pct=20) == "take_profit 20%: 80.00 <= 80.00"
    assert hit(short, 120.0, take_profit_pct=20) is None


def test_percent_stops_on_a_one_lot() -> None:
    one = held(1)
    assert hit(one, 95.0, stop_loss_pct=5) == "stop_loss 5%: 95.00 <= 95.00"
    assert hit(one, 105.0, take_profit_pct=5) == "take_profit 5%: 105.00 >= 105.00"
    assert hit(one, 95.0, take_profit_pct=5) is None


def test_a_penny_stock_stop_fires_and_a_zero_price_never_does() -> None:
    penny = held(1000, cost=1.0)
    assert hit(penny, 0.5, stop_loss_pct=10) == "stop_loss 10%: 0.50 <= 0.90"
    assert hit(penny, 1.5, take_profit_pct=10) == "take_profit 10%: 1.50 >= 1.10"
    # A zero or negative print is a bad tick, not a 100% loss to sell into.
    assert hit(penny, 0.0, stop_loss_pct=10) is None
    assert hit(held(-10), 0.0, take_profit_pct=10) is None
    # a short penny stock's take-profit fires under a dollar
    assert hit(held(-1000, cost=1.0), 0.5, take_profit_pct=10) == "take_profit 10%: 0.50 <= 0.90"


def test_a_flat_position_never_triggers_whatever_its_old_cost() -> None:
    flat = Position(AAPL, quantity=0.0, avg_cost=100.0)
    assert hit(flat, 150.0, stop_loss_pct=10) is None
    assert hit(flat, 50.0, take_profit_pct=10) is None


def test_trailing_stops_fire_exactly_at_their_level_on_either_side() -> None:
    assert hit(held(1), 90.0, 100.0, trailing_stop_pct=10) == "trailing_stop 10%: 90.00 <= 90.00"
    assert hit(held(1), 90.01, 100.0, trailing_stop_pct=10) is None
    assert hit(held(-1), 125.0, 100.0, trailing_stop_pct=25) == (
        "trailing_stop 25%: 125.00 >= 125.00"
    )
    assert hit(held(-1), 124.8, 100.0, trailing_stop_pct=25) is None
    flat = Position(AAPL)
    assert hit(flat, 50.0, 100.0, trailing_stop_pct=10) is None  # nothing held
    assert hit(flat, 150.0, 100.0, trailing_stop_pct=10) is None


def test_money_drops_the_cents_from_100() -> None:
    assert money(100) == "100" and money(-100) == "-100" and money(1234.5) == "1,234"
    assert money(99.99) == "99.99" and money(-0.5) == "-0.50"


# ----------------------------------------------------------------------- per-bar levels


def test_stop_rules_from_config_keep_every_setting() -> None:
    rules = StopRules.from_config(
        cfg(
            stop_loss_pct=1,
            stop_loss_points=2,
            stop_loss_money=3,
            take_profit_pct=4,
            take_profit_points=5,
            take_profit_money=6,
            trailing_stop_pct=7,
            trailing_stop_points=8,
        )
    )
    assert rules == StopRules(1, 2, 3, 4, 5, 6, 7, 8)
    assert StopRules.from_config(None) is None and StopRules.from_config(cfg()) is None


@pytest.mark.parametrize(
    ("rules", "long_levels", "short_levels"),
    [
        (StopRules(sl_pct=10), (90.0, math.nan), (110.0, math.nan)),
        (StopRules(sl_points=5), (95.0, math.nan), (105.0, math.nan)),
        (StopRules(trail_pct=20), (120.0, math.nan), (60.0, math.nan)),
        (StopRules(tp_pct=10), (math.nan, 110.0), (math.nan, 90.0)),
        (StopRules(tp_points=5), (math.nan, 105.0), (math.nan, 95.0)),
    ],
)
def test_each_stop_rule_alone_sets_its_level(
    rules: StopRules, long_levels: tuple[float, float], short_levels: tuple[float, float]
) -> None:
    # entered at 100; the best price since is 150 for the long, 50 for the short
    assert rules.levels(True, 100.0, 150.0) == pytest.approx(long_levels, nan_ok=True)
    assert rules.levels(False, 100.0, 50.0) == pytest.approx(short_levels, nan_ok=True)


def test_several_rules_the_tightest_stop_and_the_nearest_target_win() -> None:
    rules = StopRules(sl_pct=10, sl_points=5, tp_pct=10, tp_points=5, trail_pct=20)
    assert rules.levels(True, 100.0, 150.0) == pytest.approx((120.0, 105.0))
    assert rules.levels(False, 100.0, 50.0) == pytest.approx((60.0, 95.0))


# ------------------------------------------------------------- the per-strategy watcher


def test_the_watcher_is_active_only_with_a_rule() -> None:
    assert StrategyLevelRisk("s1").active is False
    assert StrategyLevelRisk("s1", cfg(take_profit_money=1)).active is True


def test_an_exit_is_a_market_order_at_the_price_and_time_that_fired_it() -> None:
    r = StrategyLevelRisk("s1", cfg(stop_loss_pct=5))
    sig = r.on_price(held(1), 95.0, T0 + 7)
    assert sig is not None
    assert (sig.side, sig.quantity, sig.order_type) == (Side.SELL, 1, OrderType.MARKET)
    assert (sig.signal_price, sig.ts, sig.strategy_id) == (95.0, T0 + 7, "s1")
    assert sig.instrument == AAPL and sig.reason == "stop_loss 5%: 95.00 <= 95.00"
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
