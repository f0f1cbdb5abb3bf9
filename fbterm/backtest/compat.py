"""backtesting.py 0.6.6's definitions of the statistics, under fbterm's keys.

``fbterm backtest --stats backtesting`` prints these so a result can be checked against
backtesting.py number for number (the test suite holds every one of them to backtesting.py's own
``compute_stats`` on generated data). Where they differ from fbterm's definitions, and why, is
written in :mod:`fbterm.backtest.conventions`. In short:

* daily returns are the last equity of each calendar date of the file's own clock (backtesting.py
  sees the naive times it is given);
* annualised volatility is that of compounded returns: ``sqrt((var + (1 + g)^2)^A - (1 + g)^(2A))``
  with ``g`` the geometric mean daily return and ``A`` the periods a year;
* Sharpe = (annualised return - 0) / annualised volatility; Sortino = annualised return /
  (downside deviation x sqrt(A));
* profit factor is the sum of winning trade *returns* over the sum of losing ones;
* exposure counts the bars of closed trades only, commissions those of closed trades only;
* durations are rounded up to the resolution of the bar period (a day for daily bars);
* alpha and beta use per-bar log returns, NaN once equity has touched zero.
"""

from __future__ import annotations

import math
from typing import Any, cast

import numpy as np
import pandas as pd

from fbterm.backtest.metrics import gmean, trade_metrics, wall_clock


def _period(index: pd.Index) -> Any:
    """backtesting.py's bar period: the median spacing of the last 100 bars."""
    return pd.Series(index[-100:]).diff().dropna().median()


def _ceil(value: Any, period: Any) -> Any:
    if not isinstance(value, pd.Timedelta) or value is pd.NaT:
        return value
    resolution = getattr(period, "resolution_string", None) or period.resolution
    return value.ceil(resolution)


def backtesting_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    close: pd.Series,
    *,
    warmup_bar: int = 0,
    commissions: float = 0.0,
    timezone: str = "UTC",
) -> pd.Series:
    """The metrics as backtesting.py 0.6.6 computes them (see the module docstring)."""
    idx = equity.index
    if isinstance(idx, pd.DatetimeIndex) and idx.tz is not None:
        idx = idx.tz_convert(timezone).tz_localize(None)  # the file's own clock, as given to it
    eq = equity.to_numpy(dtype=float)
    n = len(eq)
    s: dict[str, Any] = {}
    s["start"], s["end"] = equity.index[0], equity.index[-1]
    s["duration"] = idx[-1] - idx[0]
    s["bars"] = n
    have = np.zeros(n, dtype=np.int64)
    for e, x in zip(trades["entry_bar"], trades["exit_bar"], strict=True):
        have[int(e) : int(x) + 1] = 1
    s["exposure_pct"] = float(have.mean() * 100)
    s["equity_start"], s["equity_final"], s["equity_peak"] = (
        float(eq[0]),
        float(eq[-1]),
        float(eq.max()),
    )
    closed = float(trades["commission"].sum()) if len(trades) else 0.0
    s["commissions"] = closed
    s["commissions_open"] = max(float(commissions) - closed, 0.0)
    s["return_pct"] = (eq[-1] - eq[0]) / eq[0] * 100
    c = close.to_numpy(dtype=float)
    w = min(max(int(warmup_bar), 0), n - 1)
    s["buy_hold_return_pct"] = (c[-1] - c[w]) / c[w] * 100
    g = 0.0
    day_returns = pd.Series(dtype=float)
    per_year = math.nan
    period = _period(idx)
    if isinstance(idx, pd.DatetimeIndex):
        freq_days = cast(pd.Timedelta, period).days
        weekends = idx.day_of_week.to_series().between(5, 6).mean() > 2 / 7 * 0.6
        per_year = {7: 52, 31: 12, 365: 1}.get(freq_days, 365 if weekends else 252)
        freq = {7: "W", 31: "ME", 365: "YE"}.get(freq_days, "D")
        curve = pd.Series(eq, index=idx)
        day_returns = curve.resample(freq).last().dropna().pct_change().dropna()
        g = gmean(day_returns.fillna(0).to_numpy(dtype=float))
    with np.errstate(over="ignore"):
        ann = np.float64(1 + g) ** per_year - 1
    s["return_ann_pct"] = float(ann * 100)
    var = day_returns.var(ddof=1)
    with np.errstate(invalid="ignore", over="ignore"):
        g64 = np.float64(g)
        vol = float(np.sqrt((var + (1 + g64) ** 2) ** per_year - (1 + g64) ** (2 * per_year)) * 100)
    s["volatility_ann_pct"] = vol
    if isinstance(idx, pd.DatetimeIndex):
        years = (s["duration"].days + s["duration"].seconds / 86400) / 365.25
        s["cagr_pct"] = ((eq[-1] / eq[0]) ** (1 / years) - 1) * 100 if years else math.nan
    else:
        s["cagr_pct"] = math.nan
    s["sharpe"] = s["return_ann_pct"] / (vol or math.nan)
    with np.errstate(divide="ignore"):
        down = np.sqrt(np.mean(day_returns.clip(-np.inf, 0) ** 2)) * np.sqrt(per_year)
        s["sortino"] = float(np.float64(ann) / down) if len(day_returns) else math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = 1 - eq / np.maximum.accumulate(eq)
    max_dd = float(np.nan_to_num(dd.max()))
    s["calmar"] = ann / (max_dd or math.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.log(eq[1:] / eq[:-1])
        b = np.log(c[1:] / c[:-1])
    beta = math.nan
    if len(a) > 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            cov = np.cov(a, b)
            beta = float(cov[0, 1] / cov[1, 1])
    s["alpha_pct"] = s["return_pct"] - beta * s["buy_hold_return_pct"]
    s["beta"] = beta
    s["max_drawdown_pct"] = -max_dd * 100
    peaks, durations = _drawdown_peaks(pd.Series(dd, index=idx))
    s["avg_drawdown_pct"] = -float(peaks.mean()) * 100 if len(peaks) else math.nan
    s["max_drawdown_duration"] = _ceil(durations.max(), period) if len(durations) else pd.NaT
    s["avg_drawdown_duration"] = _ceil(durations.mean(), period) if len(durations) else pd.NaT
    t = trade_metrics(trades, None)
    rets = trades["return_pct"].to_numpy(dtype=float) if len(trades) else np.zeros(0)
    t["profit_factor"] = float(rets[rets > 0].sum()) / (
        abs(float(rets[rets < 0].sum())) or math.nan
    )
    if len(trades):
        d = (
            pd.Series(
                wall_clock(pd.DatetimeIndex(trades["exit_time"]), timezone)
                - wall_clock(pd.DatetimeIndex(trades["entry_time"]), timezone)
            )
            if isinstance(idx, pd.DatetimeIndex)
            else trades["exit_bar"] - trades["entry_bar"]
        )
        t["max_trade_duration"] = _ceil(d.max(), period)
        t["avg_trade_duration"] = _ceil(d.mean(), period)
    s.update(t)
    return pd.Series(s, dtype=object, name="metrics")


def _drawdown_peaks(dd: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """(depth, duration) of each drawdown episode, as backtesting.py finds them: between two
    bars at a peak (or the last bar), when there is at least one bar below in between."""
    iloc = np.unique(np.r_[(dd == 0).to_numpy().nonzero()[0], len(dd) - 1])
    prev = np.r_[-10, iloc[:-1]]
    keep = iloc > prev + 1
    keep[0] = False
    lo, hi = prev[keep], iloc[keep]
    if not len(hi):
        return np.zeros(0), pd.Series(dtype=object)
    values = dd.to_numpy()
    depth = np.array([values[a : b + 1].max() for a, b in zip(lo, hi, strict=True)])
    durations = pd.Series(dd.index[hi] - dd.index[lo])
    return depth, durations
