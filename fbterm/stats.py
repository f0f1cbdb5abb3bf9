"""Return and risk statistics of equity curves and trade results: one implementation each.

Pure functions over numpy arrays, importing nothing from fbterm, so every layer (risk, live
metrics, the backtester) can use them and they all get the same numbers.

Conventions, shared by every function here:

* returns are simple per-period returns (``e[t] / e[t-1] - 1``), not log returns;
* ``risk_free`` is a rate **per period** (the same period as the returns, e.g. a daily rate for
  daily returns), never an annual rate; it is subtracted from the mean return before scaling;
* annualisation multiplies a per-period ratio by ``sqrt(periods_per_year)``;
* standard deviations are sample ones (``ddof=1``): histories are short and the population
  formula would overstate the edge;
* drawdown is a non-negative fraction below the running peak (0.25 = 25% below);
* NaN and infinite values in a return series are dropped before a statistic is computed (a
  zero equity makes the next return undefined; it must not poison the whole ratio).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
Floats = Sequence[float] | npt.NDArray[Any]

# 252 sessions of 6.5 hours: annualising by trading time, not calendar time, keeps an
# intraday equity curve's Sharpe comparable with a daily backtest's.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
_DAY = 86400.0


def finite(values: Iterable[float] | npt.NDArray[Any]) -> FloatArray:
    """The finite values of ``values`` as a float array (NaN and +/-inf dropped)."""
    # list() only for true iterables: converting a large array element by element is slow.
    a: FloatArray = np.asarray(
        values if isinstance(values, np.ndarray) else list(values), dtype=float
    )
    return a[np.isfinite(a)]


# ================================================================================ returns


def simple_returns(equity: Floats) -> FloatArray:
    """Per-period simple returns of an equity curve; NaN where the previous value is 0."""
    e = np.asarray(equity, dtype=float)
    if e.size < 2:
        return np.empty(0)
    prev = e[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r: FloatArray = np.where(prev != 0, e[1:] / prev - 1.0, np.nan)
    return r


def returns_net_of_flows(equity: Floats, capital: Floats) -> FloatArray:
    """Per-period returns of an equity curve whose capital was moved in or out on the way.

    ``capital[t]`` is the capital allocated at sample t; a change of it is a deposit or a
    withdrawal, not a gain: ``r[t] = (e[t] - e[t-1] - (c[t] - c[t-1])) / e[t-1]``. NaN where
    the previous equity is not positive.
    """
    e = np.asarray(equity, dtype=float)
    c = np.asarray(capital, dtype=float)
    if e.shape != c.shape:
        raise ValueError(f"equity and capital differ in length: {e.size} != {c.size}")
    if e.size < 2:
        return np.empty(0)
    prev = e[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        r: FloatArray = np.where(prev > 0, (np.diff(e) - np.diff(c)) / prev, np.nan)
    return r


def sharpe_ratio(returns: Floats, periods_per_year: float = 252.0, risk_free: float = 0.0) -> float:
    """Annualised Sharpe ``(mean - risk_free) / std * sqrt(periods_per_year)``.

    ``risk_free`` is a rate **per period** of the returns, not per year: with daily returns
    and a 4% annual rate pass ``0.04 / 252``. NaN when undefined: fewer than two finite
    returns, or no variation.
    """
    r = finite(returns)
    if r.size < 2:
        return math.nan
    sd = float(r.std(ddof=1))
    if sd <= 0:
        return math.nan
    return (float(r.mean()) - risk_free) / sd * math.sqrt(periods_per_year)


def sortino_ratio(returns: Floats, periods_per_year: float = 252.0) -> float:
    """Annualised Sortino ``mean / downside deviation * sqrt(periods_per_year)``.

    The downside deviation is ``sqrt(mean(min(r, 0) ** 2))`` over all returns (target 0, as
    empyrical's). NaN with no returns or no losing period.
    """
    r = finite(returns)
    if r.size < 1:
        return math.nan
    down = math.sqrt(float(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(np.mean(r)) / down * math.sqrt(periods_per_year) if down > 0 else math.nan


def rolling_sharpe(returns: Floats, window: int, periods_per_year: float = 252.0) -> FloatArray:
    """Sharpe over each trailing window; the first ``window - 1`` entries are NaN."""
    if window < 2:
        raise ValueError(f"window must be >= 2, got {window}")
    r = np.asarray(returns, dtype=float)
    out = np.full(r.size, np.nan)
    for i in range(window - 1, r.size):
        out[i] = sharpe_ratio(r[i - window + 1 : i + 1], periods_per_year)
    return out


def period_returns(ts: Floats, values: Floats, period_seconds: float) -> FloatArray:
    """Returns from one period to the next of an irregularly sampled equity curve: the last
    sample of each ``period_seconds`` bucket (aligned to the epoch) against the previous
    bucket's. A bucket without samples is skipped, not interpolated."""
    if not period_seconds > 0:
        raise ValueError(f"period_seconds must be > 0, got {period_seconds!r}")
    t = np.asarray(ts, dtype=float)
    v = np.asarray(values, dtype=float)
    if t.size < 2:
        return np.empty(0)
    bucket = np.floor(t / period_seconds)
    last = np.flatnonzero(np.r_[bucket[1:] != bucket[:-1], True])
    return simple_returns(v[last])


def period_sharpe(
    ts: Floats, values: Floats, period_seconds: float, window: int, min_returns: int = 30
) -> float:
    """Sharpe of the last ``window`` per-period returns of a sampled equity curve, annualised
    by the period (:func:`periods_per_year`, ``"sessions"``). NaN with fewer than
    ``min(window, min_returns)`` returns: a ratio of a handful of numbers is noise, and a live
    screen should show "no value" rather than -277."""
    r = finite(period_returns(ts, values, period_seconds))[-window:]
    if r.size < max(2, min(window, min_returns)):
        return math.nan
    return sharpe_ratio(r, periods_per_year(period_seconds, "sessions"))


# ============================================================================== drawdown


def drawdown_series(equity: Floats) -> FloatArray:
    """Fraction below the running peak at each point (0 at a new high, 0 while the peak <= 0)."""
    e = np.asarray(equity, dtype=float)
    if e.size == 0:
        return np.empty(0)
    peak = np.maximum.accumulate(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = np.where(peak > 0, 1.0 - e / peak, 0.0)
    return np.clip(dd, 0.0, None)


def max_drawdown(equity: Floats) -> float:
    """The largest peak-to-trough fall of an equity curve, as a fraction; 0 for no data."""
    dd = drawdown_series(equity)
    return float(dd.max()) if dd.size else 0.0


def drawdown_episodes(dd: Floats) -> tuple[FloatArray, npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """Each drawdown episode of a drawdown series: (depth, peak index, end index).

    An episode is a maximal run of ``dd > 0``; its peak is the point just before it (index 0 if
    the series starts under water) and its end the first point back at a peak, or the last
    point if it never recovers. Durations are ``end - peak`` in whatever the index measures.
    """
    d_arr = np.asarray(dd, dtype=float)
    under = d_arr > 0
    if not under.any():
        empty = np.zeros(0, dtype=np.intp)
        return np.zeros(0), empty, empty
    d = np.diff(np.r_[0, under.astype(np.int8), 0])
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)  # first point back at a peak (or len)
    depth = np.maximum.reduceat(d_arr, starts)
    peak_at = np.maximum(starts - 1, 0)
    end_at = np.minimum(ends, len(d_arr) - 1)
    return depth, peak_at, end_at


# ====================================================================== annualisation

PeriodsBasis = Literal["trading_time", "sessions", "calendar"]


def periods_per_year(
    step_seconds: float, basis: PeriodsBasis = "trading_time", *, weekends: bool = False
) -> float:
    """How many steps of ``step_seconds`` make a year, under one of three conventions.

    * ``"trading_time"``: trading seconds per year (252 sessions of 6.5 h) over the step, for
      any step: suits an irregularly sampled intraday curve (live metrics).
    * ``"sessions"``: as ``trading_time`` below 0.9 day; for daily-ish steps 252 sessions a
      year, from six days on 52 weeks a year (bars, where a "day" bar spans 24 h of clock).
    * ``"calendar"``: by whole days of the step (``step_seconds // 86400``): 52 for weekly,
      12 for 28-31 days, 1 for a year or more, otherwise 365 when the data has weekends and 252
      when it has not (the backtester's periodic returns).

    A step that is not positive gives 252 (daily) under the first two.
    """
    step = float(step_seconds)
    if basis == "calendar":
        days = int(step // _DAY)
        if days == 7:
            return 52.0
        if 28 <= days <= 31:
            return 12.0
        if days >= 365:
            return 1.0
        return 365.0 if weekends else 252.0
    if step <= 0:
        return 252.0
    if basis == "sessions" and step >= 0.9 * _DAY:
        return 252.0 * _DAY / step if step < 6 * _DAY else 52.0 * 7 * _DAY / step
    return TRADING_SECONDS_PER_YEAR / step


def periods_per_year_from_ts(ts: Floats) -> float:
    """Trading-time annualisation for an irregular series, from its median positive interval."""
    t = np.asarray(ts, dtype=float)
    if t.size < 2:
        return 252.0
    dts = np.diff(t)
    dts = dts[dts > 0]
    if dts.size == 0:
        return 252.0
    return periods_per_year(float(np.median(dts)), "trading_time")


# ================================================================================= Kelly


def kelly_continuous(returns: Floats, risk_free: float = 0.0) -> float:
    """Continuous Kelly fraction ``(mean - risk_free) / variance`` of per-period returns.

    ``risk_free`` is per period. Sample variance (ddof=1). With zero variance the answer is
    +/-inf (or 0 for a zero mean): callers clamp, and an infinite fraction honestly says "the
    data shows no risk". Raises ValueError with fewer than two finite returns.
    """
    r = finite(returns)
    if r.size < 2:
        raise ValueError(f"need at least 2 returns for a variance, got {r.size}")
    mean = float(r.mean()) - risk_free
    var = float(r.var(ddof=1))
    if var <= 0.0:
        return 0.0 if mean == 0 else math.copysign(math.inf, mean)
    return mean / var


def kelly_discrete(win_rate: float, payoff: float) -> float:
    """Discrete Kelly ``W - (1 - W) / R`` for win rate W and payoff ratio R (avg win / avg loss)."""
    if not 0.0 <= win_rate <= 1.0 or math.isnan(win_rate):
        raise ValueError(f"win_rate must be in [0, 1], got {win_rate!r}")
    if not payoff > 0:
        raise ValueError(f"payoff must be > 0, got {payoff!r}")
    return win_rate - (1.0 - win_rate) / payoff


def win_rate_and_payoff(trade_pnls: Floats) -> tuple[float, float]:
    """(W, R) from per-trade P&L. Scratch trades (exactly 0) count as neither win nor loss.

    With no losing trade R is infinite, and ``kelly_discrete`` then returns W: the data shows
    no downside, so the fraction is bounded only by the cap. No winning (or no decided) trade
    gives (0, 1).
    """
    p = finite(trade_pnls)
    wins, losses = p[p > 0], p[p < 0]
    decided = wins.size + losses.size
    if decided == 0:
        return 0.0, 1.0
    w = wins.size / decided
    if losses.size == 0:
        return w, math.inf
    if wins.size == 0:
        return 0.0, 1.0
    return w, float(wins.mean()) / float(-losses.mean())


__all__ = [
    "TRADING_SECONDS_PER_YEAR",
    "drawdown_episodes",
    "drawdown_series",
    "finite",
    "kelly_continuous",
    "kelly_discrete",
    "max_drawdown",
    "period_returns",
    "period_sharpe",
    "periods_per_year",
    "periods_per_year_from_ts",
    "returns_net_of_flows",
    "rolling_sharpe",
    "sharpe_ratio",
    "simple_returns",
    "sortino_ratio",
    "win_rate_and_payoff",
]
