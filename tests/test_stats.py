"""fbterm.stats against hand-computed cases: returns, Sharpe/Sortino conventions, drawdown
episodes, the three periods-per-year conventions; and risk's max_drawdown agreeing with it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fbterm.risk.portfolio import max_drawdown as risk_max_drawdown
from fbterm.stats import (
    TRADING_SECONDS_PER_YEAR,
    drawdown_episodes,
    drawdown_series,
    finite,
    max_drawdown,
    periods_per_year,
    periods_per_year_from_ts,
    sharpe_ratio,
    simple_returns,
    sortino_ratio,
)

DAY = 86400.0


def test_simple_returns_and_finite() -> None:
    r = simple_returns([100.0, 110.0, 0.0, 5.0, 4.0])
    assert r[:2] == pytest.approx([0.1, -1.0])
    assert math.isnan(r[2])  # after a zero equity the return is undefined
    assert r[3] == pytest.approx(-0.2)
    assert simple_returns([1.0]).size == 0
    assert list(finite(iter([1.0, math.nan, math.inf, -2.0]))) == [1.0, -2.0]


def test_sharpe_risk_free_is_per_period() -> None:
    r = [0.01, 0.03, -0.01, 0.02]
    mean, sd = 0.0125, float(np.std(r, ddof=1))
    assert sharpe_ratio(r, 252) == pytest.approx(mean / sd * math.sqrt(252))
    assert sharpe_ratio(r, 252, risk_free=0.0025) == pytest.approx(0.01 / sd * math.sqrt(252))
    assert math.isnan(sharpe_ratio([0.01, 0.01]))  # no variation
    assert math.isnan(sharpe_ratio([0.01, math.nan]))  # one finite return


def test_sortino_uses_downside_deviation_over_all_periods() -> None:
    r = [0.02, -0.01, 0.03, -0.02]
    down = math.sqrt((0.01**2 + 0.02**2) / 4)
    assert sortino_ratio(r, 12) == pytest.approx(0.005 / down * math.sqrt(12))
    assert math.isnan(sortino_ratio([0.01, 0.02]))  # never lost
    assert math.isnan(sortino_ratio([]))


def test_drawdown_episodes() -> None:
    eq = [100, 110, 99, 110, 120, 90, 96, 121.0, 120.0]
    dd = drawdown_series(eq)
    depth, peak_at, end_at = drawdown_episodes(dd)
    assert depth == pytest.approx([0.1, 0.25, 1 - 120 / 121])
    assert list(peak_at) == [1, 4, 7]
    assert list(end_at) == [3, 7, 8]  # the last one never recovers: it ends at the last point
    assert max_drawdown(eq) == pytest.approx(0.25)
    empty = drawdown_episodes(drawdown_series([1.0, 2.0, 3.0]))
    assert [a.size for a in empty] == [0, 0, 0]


def test_periods_per_year_conventions() -> None:
    # Trading time: any step, by 252 sessions of 6.5 hours.
    assert periods_per_year(60.0) == pytest.approx(TRADING_SECONDS_PER_YEAR / 60)
    assert periods_per_year(DAY) == pytest.approx(252 * 6.5 / 24)
    # Sessions: intraday as trading time, then 252 days, then 52 weeks.
    assert periods_per_year(60.0, "sessions") == periods_per_year(60.0)
    assert periods_per_year(DAY, "sessions") == 252.0
    assert periods_per_year(7 * DAY, "sessions") == 52.0
    # Calendar: by whole days of the step.
    assert periods_per_year(900.0, "calendar") == 252.0
    assert periods_per_year(900.0, "calendar", weekends=True) == 365.0
    assert periods_per_year(7 * DAY, "calendar") == 52.0
    assert periods_per_year(30 * DAY, "calendar") == 12.0
    assert periods_per_year(366 * DAY, "calendar") == 1.0
    # Nothing to go by: daily.
    assert periods_per_year(0.0) == periods_per_year(-5.0, "sessions") == 252.0
    assert periods_per_year_from_ts([1.0]) == 252.0
    assert periods_per_year_from_ts([0.0, 0.0, 0.0]) == 252.0
    assert periods_per_year_from_ts([0.0, 10.0, 20.0, 20.0, 50.0]) == pytest.approx(
        TRADING_SECONDS_PER_YEAR / 10
    )


equity_values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, math.nan, math.inf, -math.inf]),
)


@pytest.mark.timeout(60)
@settings(max_examples=300, deadline=2000)
@given(st.lists(equity_values, max_size=30))
def test_max_drawdown_is_risks_max_drawdown(equity: list[float]) -> None:
    # fbterm.risk.portfolio keeps its own copy until it is pointed here; they must agree.
    with np.errstate(over="ignore"):  # a tiny peak under a large loss overflows to -inf: fine
        a, b = max_drawdown(equity), risk_max_drawdown(equity)
        assert max_drawdown(np.asarray(equity)) == a or math.isnan(a)
    assert a == b or (math.isnan(a) and math.isnan(b))
