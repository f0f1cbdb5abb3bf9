"""Position sizing by hand-computed examples: each mode, option multipliers, prices under $1
or unusable, all-in net of commission and of closing the old position (``sizer``,
``target_quantity`` and ``reentry_equity`` in :mod:`fbterm.strategies.base`).

Each test names what a quant would get wrong; they were written against the mutants the rest
of the suite let through (README "Mutation testing")."""

from __future__ import annotations

import math

import pytest

from fbterm.strategies.base import Sizing, reentry_equity, sizer, target_quantity


def test_fixed_sizing_is_units_at_full_target() -> None:
    size = sizer(Sizing("fixed", 100))
    assert size(1.0, 50.0, 0.0, 0.0) == 100
    assert size(-0.5, 50.0, 0.0, 0.0) == -50
    assert size(0.0, 50.0, 1e6, 0.0) == 0


def test_cash_sizing_counts_the_option_multiplier() -> None:
    assert sizer(Sizing("cash", 10_000))(1.0, 50.0, 0.0, 0.0) == 200
    assert sizer(Sizing("cash", 10_000))(-0.5, 50.0, 0.0, 0.0) == -100
    # 10,000 buys 20 contracts at 5.00 (500 each), not 2,000
    assert sizer(Sizing("cash", 10_000), multiplier=100)(1.0, 5.0, 0.0, 0.0) == 20
    assert target_quantity(1.0, 5.0, 0.0, Sizing("cash", 10_000), multiplier=100) == 20


def test_fraction_sizing_is_a_share_of_equity() -> None:
    size = sizer(Sizing("fraction", 0.5))
    assert size(1.0, 50.0, 100_000.0, 0.0) == 1000
    assert size(-0.5, 50.0, 100_000.0, 0.0) == -500
    assert size(1.0, 0.25, -5.0, 0.0) == 0  # no equity, nothing to size


def test_prices_under_a_dollar_size_and_unusable_prices_do_not() -> None:
    size = sizer(Sizing("fraction", 1.0))
    assert size(1.0, 0.5, 100.0, 0.0) == 200
    for price in (0.0, -1.0, math.nan, math.inf):
        assert size(1.0, price, 100.0, 0.0) == 0.0, price


def test_all_in_sizes_like_backtesting_py_just_under_the_equity() -> None:
    size = sizer(Sizing("all_in"))
    # 10,000 at 100 is exactly 100 shares; sized at (1 - 1e-10) of equity it is 99
    assert size(1.0, 100.0, 10_000.0, 0.0) == 99
    assert size(-1.0, 100.0, 10_000.0, 0.0) == -99
    assert size(1.0, 100.0, -1.0, 0.0) == 0


def test_all_in_leaves_room_for_the_commission() -> None:
    size = sizer(Sizing("all_in"), commission_fraction=0.01)
    assert size(1.0, 100.0, 100_000.0, 0.0) == 990  # 100,000 / 101
    assert size(1.0, 100.0, 100_000.0, 500.0) == 990  # adding to a long: no closing leg
    # reversing a long of 500: its closing commission (500) comes off first
    assert size(-1.0, 100.0, 100_000.0, 500.0) == -985
    # reversing a 1-lot long: 1.00 of commission decides the last share
    assert size(-1.0, 100.0, 10_101.0, 1.0) == -99
    assert size(-1.0, 100.0, 10_101.0, 0.0) == -100


def test_all_in_without_a_commission_fraction_charges_none() -> None:
    assert sizer(Sizing("all_in"))(1.0, 100.0, 100_000.0, 0.0) == 999
    assert target_quantity(1.0, 100.0, 100_000.0, Sizing("all_in")) == 999
    # no position given: nothing to close first
    assert (
        target_quantity(-1.0, 100.0, 10_101.0, Sizing("all_in"), commission_fraction=0.01) == -100
    )


def test_reentry_equity_is_what_is_left_after_closing() -> None:
    assert reentry_equity(100_000.0, -500.0, 100.0, 0.001) == pytest.approx(99_950.0)
    assert reentry_equity(100_000.0, 500.0, 100.0, 0.0) == 100_000.0


def test_all_in_scales_with_a_partial_target_and_needs_equity() -> None:
    size = sizer(Sizing("all_in"))
    assert size(0.5, 100.0, 10_000.0, 0.0) == 49  # half of (just under) 100 shares
    assert size(1.0, 0.5, -1.0, 0.0) == 0  # a penny stock is no way round a negative equity
