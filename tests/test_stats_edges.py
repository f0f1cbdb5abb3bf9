"""Statistics at their edges: the shortest series that has an answer, boundaries of the
annualisation conventions, zero and negative equity without warnings, rolling windows
(:mod:`fbterm.stats`).

Each test names what a quant would get wrong; they were written against the mutants the rest
of the suite let through (README "Mutation testing")."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fbterm.stats import (
    TRADING_SECONDS_PER_YEAR,
    drawdown_episodes,
    drawdown_series,
    finite,
    kelly_continuous,
    kelly_discrete,
    periods_per_year,
    periods_per_year_from_ts,
    rolling_sharpe,
    sharpe_ratio,
    simple_returns,
    sortino_ratio,
    win_rate_and_payoff,
)

DAY = 86_400.0


# ------------------------------------------------------------------------------ returns


def test_two_equity_points_make_one_return() -> None:
    assert simple_returns([100.0, 110.0]).tolist() == pytest.approx([0.1])
    assert simple_returns([100.0]).size == 0 and simple_returns([]).size == 0


def test_returns_after_a_zero_equity_are_undefined_and_quiet() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = simple_returns([0.0, 0.0, 5.0, 10.0])
        assert math.isnan(r[0]) and math.isnan(r[1]) and r[2] == pytest.approx(1.0)
        assert drawdown_series([0.0, -1.0, 0.0, 2.0, 1.0]).tolist() == [0.0, 0.0, 0.0, 0.0, 0.5]


def test_finite_gives_floats_without_nan_or_inf() -> None:
    got = finite([1, 2, 3])
    assert got.dtype == np.float64 and got.tolist() == [1.0, 2.0, 3.0]
    assert finite(np.array([1.0, np.nan, np.inf, -np.inf, 2.0])).tolist() == [1.0, 2.0]


def test_sharpe_needs_two_returns_and_annualises_by_252_by_default() -> None:
    r = [0.01, 0.03]
    sd = float(np.std(r, ddof=1))
    assert sharpe_ratio(r) == pytest.approx(0.02 / sd * math.sqrt(252))
    assert sharpe_ratio(r, risk_free=0.01) == pytest.approx(0.01 / sd * math.sqrt(252))
    assert math.isnan(sharpe_ratio([0.01])) and math.isnan(sharpe_ratio([0.01, 0.01]))


def test_sortino_needs_one_losing_return_and_annualises_by_252_by_default() -> None:
    assert sortino_ratio([-0.01]) == pytest.approx(-1.0 * math.sqrt(252))
    assert sortino_ratio([0.03, -0.01]) == pytest.approx(
        0.01 / math.sqrt(0.0001 / 2) * math.sqrt(252)
    )
    assert math.isnan(sortino_ratio([])) and math.isnan(sortino_ratio([0.01, 0.02]))


def test_rolling_sharpe_is_the_sharpe_of_each_trailing_window() -> None:
    r = [0.01, -0.02, 0.03, 0.0, 0.015]
    got = rolling_sharpe(r, 3, periods_per_year=12)
    assert math.isnan(got[0]) and math.isnan(got[1]) and got.size == 5
    for i in range(2, 5):
        assert got[i] == pytest.approx(sharpe_ratio(r[i - 2 : i + 1], 12))
    two = rolling_sharpe([0.01, 0.03, 0.02], 2)
    assert math.isnan(two[0]) and two[1] == pytest.approx(sharpe_ratio([0.01, 0.03]))
    assert two[2] == pytest.approx(sharpe_ratio([0.03, 0.02]))
    with pytest.raises(ValueError, match=r"^window must be >= 2, got 1$"):
        rolling_sharpe(r, 1)


# ----------------------------------------------------------------------------- drawdown


def test_drawdown_series_of_nothing_is_empty() -> None:
    assert drawdown_series([]).size == 0


def test_a_drawdown_episode_that_starts_after_the_first_point_peaks_just_before_it() -> None:
    depth, peak, end = drawdown_episodes([0.0, 0.1, 0.0, 0.0, 0.2, 0.3])
    assert depth.tolist() == pytest.approx([0.1, 0.3]) and depth.dtype == np.float64
    assert peak.tolist() == [0, 3] and end.tolist() == [2, 5]
    depth, peak, end = drawdown_episodes([0.2, 0.0])  # under water from the start
    assert (depth.tolist(), peak.tolist(), end.tolist()) == ([0.2], [0], [1])


def test_no_drawdown_episode_gives_empty_index_arrays() -> None:
    depth, peak, end = drawdown_episodes([0.0, 0.0])
    assert depth.size == peak.size == end.size == 0
    assert peak.dtype == np.intp and end.dtype == np.intp


# ------------------------------------------------------------------------ annualisation


def test_trading_time_is_the_default_basis() -> None:
    assert periods_per_year(3600) == TRADING_SECONDS_PER_YEAR / 3600
    assert periods_per_year(0.5) == TRADING_SECONDS_PER_YEAR / 0.5  # sub-second steps too
    assert periods_per_year(0) == 252.0 and periods_per_year(-5) == 252.0


@pytest.mark.parametrize(
    ("days", "expected"),
    [(7, 52.0), (27, 252.0), (28, 12.0), (31, 12.0), (32, 252.0), (364, 252.0), (365, 1.0)],
)
def test_calendar_basis_at_its_boundaries(days: int, expected: float) -> None:
    assert periods_per_year(days * DAY + 3600, "calendar") == expected
    if expected == 252.0:
        assert periods_per_year(days * DAY, "calendar", weekends=True) == 365.0


def test_sessions_basis_at_its_boundaries() -> None:
    assert periods_per_year(0.9 * DAY, "sessions") == pytest.approx(252 / 0.9)
    assert periods_per_year(0.89 * DAY, "sessions") == TRADING_SECONDS_PER_YEAR / (0.89 * DAY)
    assert periods_per_year(5.9 * DAY, "sessions") == pytest.approx(252 / 5.9)
    assert periods_per_year(6 * DAY, "sessions") == pytest.approx(52 * 7 / 6)
    assert periods_per_year(6.5 * DAY, "sessions") == pytest.approx(52 * 7 / 6.5)


def test_annualisation_from_timestamps_uses_the_median_positive_interval() -> None:
    assert periods_per_year_from_ts([0.0, 60.0]) == TRADING_SECONDS_PER_YEAR / 60
    # repeated timestamps (interval 0) are ignored; sub-second intervals are not
    assert periods_per_year_from_ts([0.0, 0.0, 0.0, 0.5, 1.0]) == TRADING_SECONDS_PER_YEAR / 0.5
    assert periods_per_year_from_ts([5.0]) == 252.0
    assert periods_per_year_from_ts([5.0, 5.0, 5.0]) == 252.0


# -------------------------------------------------------------------------------- Kelly


def test_continuous_kelly_subtracts_the_risk_free_rate() -> None:
    r = [0.01, 0.03]
    var = float(np.var(r, ddof=1))
    assert kelly_continuous(r) == pytest.approx(0.02 / var)
    assert kelly_continuous(r, risk_free=0.01) == pytest.approx(0.01 / var)
    with pytest.raises(ValueError, match=r"^need at least 2 returns for a variance, got 1$"):
        kelly_continuous([0.01, math.nan])


def test_discrete_kelly_accepts_win_rates_of_exactly_0_and_1() -> None:
    assert kelly_discrete(0.0, 2.0) == -0.5
    assert kelly_discrete(1.0, 2.0) == 1.0
    with pytest.raises(ValueError, match=r"^win_rate must be in \[0, 1\], got 1.5$"):
        kelly_discrete(1.5, 2.0)
    with pytest.raises(ValueError, match=r"^payoff must be > 0, got 0.0$"):
        kelly_discrete(0.5, 0.0)


def test_win_rate_and_payoff_count_small_wins_and_single_trades() -> None:
    assert win_rate_and_payoff([0.5, -1.0]) == (0.5, 0.5)  # a 50-cent win is a win
    assert win_rate_and_payoff([-2.0]) == (0.0, 1.0)  # one losing trade: no edge, no payoff
    assert win_rate_and_payoff([3.0]) == (1.0, math.inf)
    assert win_rate_and_payoff([0.0, 0.0]) == (0.0, 1.0)  # only scratches: undecided
    assert win_rate_and_payoff([1.0, 1.0, -1.0]) == (pytest.approx(2 / 3), 1.0)


def test_rolling_sharpe_of_fewer_returns_than_the_window_is_all_undefined() -> None:
    assert np.isnan(rolling_sharpe([0.01, 0.03, 0.02], 5)).all()
