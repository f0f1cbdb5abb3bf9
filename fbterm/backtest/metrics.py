"""Performance metrics of a backtest, as one pandas Series with snake_case keys.

Two sets of definitions. ``"fbterm"`` (the default) is written out in
:mod:`fbterm.backtest.conventions` (also in ``fbterm backtest --help``), with where it departs
from backtesting.py and why; ``"backtesting"`` (:mod:`fbterm.backtest.compat`) gives
backtesting.py 0.6.6's own definitions under the same keys, so numbers can be compared one for
one. The keys, and everything that does not depend on a definition (equity, returns, trades,
drawdown depth), are the same in both.

Sharpe, Sortino, drawdowns, periods per year and Kelly come from :mod:`fbterm.stats`, the one
implementation the live metrics use too; this module picks the returns and the conventions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fbterm import stats

DEFINITIONS = ("fbterm", "backtesting")

METRIC_LABELS: dict[str, str] = {
    "start": "Start",
    "end": "End",
    "duration": "Duration",
    "bars": "Bars",
    "exposure_pct": "Exposure Time [%]",
    "equity_start": "Equity Start [$]",
    "equity_final": "Equity Final [$]",
    "equity_peak": "Equity Peak [$]",
    "commissions": "Commissions [$]",
    "commissions_open": "Commissions, Open Trade [$]",
    "return_pct": "Return [%]",
    "buy_hold_return_pct": "Buy & Hold Return [%]",
    "return_ann_pct": "Return (Ann.) [%]",
    "volatility_ann_pct": "Volatility (Ann.) [%]",
    "cagr_pct": "CAGR [%]",
    "sharpe": "Sharpe Ratio",
    "sortino": "Sortino Ratio",
    "calmar": "Calmar Ratio",
    "alpha_pct": "Alpha [%]",
    "beta": "Beta",
    "max_drawdown_pct": "Max. Drawdown [%]",
    "avg_drawdown_pct": "Avg. Drawdown [%]",
    "max_drawdown_duration": "Max. Drawdown Duration",
    "avg_drawdown_duration": "Avg. Drawdown Duration",
    "trades": "# Trades",
    "win_rate_pct": "Win Rate [%]",
    "best_trade_pct": "Best Trade [%]",
    "worst_trade_pct": "Worst Trade [%]",
    "avg_trade_pct": "Avg. Trade [%]",
    "max_trade_duration": "Max. Trade Duration",
    "avg_trade_duration": "Avg. Trade Duration",
    "profit_factor": "Profit Factor",
    "expectancy": "Expectancy [$]",
    "expectancy_pct": "Expectancy [%]",
    "sqn": "SQN",
    "kelly": "Kelly Criterion",
}


def bar_step(index: pd.Index) -> pd.Timedelta | None:
    """The bar size: the median spacing of the first 10,000 bars (None without times)."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None
    ns = index.as_unit("ns").asi8[: min(len(index), 10_000)]
    return pd.Timedelta(int(np.median(np.diff(ns))), "ns")


def has_weekends(index: pd.DatetimeIndex) -> bool:
    """backtesting.py's test: more than 60% of the weekend share of bars fall on weekends."""
    # Day of week from epoch days (1970-01-01 was a Thursday, Monday = 0): the same as
    # DatetimeIndex.day_of_week at a tenth of the cost on a million bars.
    dow = (index.as_unit("ns").asi8 // 86_400_000_000_000 + 3) % 7
    return float((dow >= 5).mean()) > 2 / 7 * 0.6


def period_points(index: pd.Index, calendar: str | None = None) -> tuple[np.ndarray | None, float]:
    """(positions of the bars that end each period, periods per year): the points the
    annualised metrics take returns between; None means every bar.

    Bars of a day or longer are their own periods (weekly/monthly/yearly bars: 52/12/1 a year;
    daily: 252, 365 when the data has weekends). Intraday bars are bucketed into days: by the
    exchange's trading session when ``calendar`` is given (the last bar of each session,
    sessions a year from the calendar), else by UTC calendar day (252 a year, 365 with weekends).
    """
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return None, 252.0
    step = bar_step(index)
    assert step is not None
    days = step.days
    freq = "W" if days == 7 else "ME" if 28 <= days <= 31 else "YE" if days >= 365 else "D"
    if freq == "D" and days < 1 and calendar is not None:
        from fbterm.sessions import session_last_bars, sessions_per_year

        ns = index.as_unit("ns").asi8
        return session_last_bars(ns, calendar), sessions_per_year(calendar, int(ns[0]))
    # Whole days, not step.total_seconds(): a float of nanoseconds can round up to the next
    # day, and the calendar convention classifies by whole days.
    per_year = stats.periods_per_year(days * 86400.0, "calendar", weekends=has_weekends(index))
    if days >= 1 and freq == "D":
        return None, per_year
    if freq == "D":
        day = index.as_unit("ns").asi8 // 86_400_000_000_000
        # The last bar of each UTC day: resample('D').last() without the cost.
        return np.flatnonzero(np.r_[day[1:] != day[:-1], True]), per_year
    at = pd.Series(np.arange(len(index)), index=index).resample(freq).last().dropna()
    return at.to_numpy(dtype=np.int64), per_year


def periodic_returns(equity: pd.Series, calendar: str | None = None) -> tuple[np.ndarray, float]:
    """(returns, periods per year) used by the annualised metrics (see :func:`period_points`)."""
    at, per_year = period_points(equity.index, calendar)
    eq = equity.to_numpy(dtype=float)
    return stats.finite(stats.simple_returns(eq if at is None else eq[at])), per_year


def wall_clock(times: pd.Index, tz: str | None) -> pd.Index:
    """Times as the exchange's wall clock shows them (naive, in ``tz``): a difference of two
    is a duration without daylight saving's extra or missing hour."""
    if tz is None or not isinstance(times, pd.DatetimeIndex) or times.tz is None:
        return times
    return times.tz_convert(tz).tz_localize(None)


def drawdown_durations(
    dd: np.ndarray, index: pd.Index, tz: str | None = None
) -> tuple[np.ndarray, list[Any]]:
    """(depth of each drawdown episode, its duration from peak to recovery or the end), the
    durations as Timedeltas of the wall clock in ``tz`` on a DatetimeIndex, else in bars."""
    depth, peak_at, end_at = stats.drawdown_episodes(dd)
    if not len(depth):
        return depth, []
    if isinstance(index, pd.DatetimeIndex):
        return depth, list(wall_clock(index[end_at], tz) - wall_clock(index[peak_at], tz))
    return depth, list(end_at - peak_at)


def round_to(value: Any, step: pd.Timedelta | None) -> Any:
    """A duration rounded to a whole number of bars (NaT and non-durations unchanged)."""
    if step is None or not isinstance(value, pd.Timedelta) or value is pd.NaT or not step.value:
        return value
    return pd.Timedelta(round(value.value / step.value) * step.value, "ns")


def gmean(x: np.ndarray) -> float:
    """Geometric mean return; 0 when any return loses everything (backtesting.py's)."""
    g = x + 1.0
    if len(g) == 0:
        return math.nan
    if np.any(g <= 0):
        return 0.0
    return float(np.exp(np.log(g).sum() / len(g)) - 1)


def alpha_beta(
    equity: np.ndarray, close: np.ndarray, ret_pct: float, bh_pct: float
) -> tuple[float, float]:
    """(alpha %, beta) against the traded instrument: beta = cov / var of the instrument's
    and the equity's simple returns over the same periods as Sharpe's (the periods after a
    positive equity), alpha = return - beta x buy & hold return (risk-free 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.diff(equity) / equity[:-1]
        b = np.diff(close) / close[:-1]
    ok = np.isfinite(a) & np.isfinite(b) & (equity[:-1] > 0)
    if ok.sum() < 2:
        return math.nan, math.nan
    a, b = a[ok], b[ok] - b[ok].mean()
    var = float(b @ b)
    if not var > 0:
        return math.nan, math.nan
    beta = float(a @ b) / var  # b is centred: sum((a - mean a) b) = sum(a b)
    return ret_pct - beta * bh_pct, beta


def performance_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    close: pd.Series,
    *,
    warmup_bar: int = 0,
    position: pd.Series | None = None,
    commissions: float = 0.0,
    calendar: str | None = None,
    clock_tz: str | None = None,
    definitions: str = "fbterm",
    timezone: str = "UTC",
) -> pd.Series:
    """All metrics of one backtest. ``calendar``: the exchange calendar intraday returns are
    bucketed by (None: UTC days); ``clock_tz``: the wall clock durations are measured on;
    ``definitions``: "fbterm" or "backtesting" (then ``timezone`` is the zone of the file's
    clock, whose dates backtesting.py buckets by). See :mod:`fbterm.backtest.conventions`."""
    if definitions not in DEFINITIONS:
        raise ValueError(
            f"definitions must be one of {', '.join(DEFINITIONS)}, got {definitions!r}"
        )
    if definitions == "backtesting":
        from fbterm.backtest.compat import backtesting_metrics

        return backtesting_metrics(
            equity, trades, close, warmup_bar=warmup_bar, commissions=commissions,
            timezone=timezone,
        )  # fmt: skip
    eq = equity.to_numpy(dtype=float)
    idx = equity.index
    n = len(eq)
    step = bar_step(idx)
    s: dict[str, Any] = {}
    s["start"] = idx[0]
    s["end"] = idx[-1]
    s["duration"] = idx[-1] - idx[0]
    s["bars"] = n
    held = np.zeros(n, dtype=bool)
    if position is not None:
        held |= position.to_numpy() != 0
    if len(trades):
        held[trades["exit_bar"].to_numpy(dtype=np.int64)] = True
    s["exposure_pct"] = float(held.mean() * 100)
    s["equity_start"] = float(eq[0])
    s["equity_final"] = float(eq[-1])
    s["equity_peak"] = float(eq.max())
    closed_fees = float(trades["commission"].sum()) if len(trades) else 0.0
    s["commissions"] = float(commissions)
    # The entry fee of a position still open at the end (and nothing else): paid, in the
    # equity, but in no closed trade. backtesting.py's Commissions leave it out.
    s["commissions_open"] = max(float(commissions) - closed_fees, 0.0)
    s["return_pct"] = (eq[-1] - eq[0]) / eq[0] * 100
    c = close.to_numpy(dtype=float)
    w = min(max(int(warmup_bar), 0), n - 1)
    s["buy_hold_return_pct"] = (c[-1] - c[w]) / c[w] * 100
    at, per_year = period_points(idx, calendar)
    r = stats.finite(stats.simple_returns(eq if at is None else eq[at]))
    g = np.float64(gmean(r) if len(r) else 0.0)  # numpy: a huge growth overflows to inf
    with np.errstate(over="ignore"):
        ann = (1 + g) ** per_year - 1 if len(r) else math.nan
    s["return_ann_pct"] = float(ann * 100)
    s["volatility_ann_pct"] = (
        float(np.std(r, ddof=1)) * math.sqrt(per_year) * 100 if len(r) > 1 else math.nan
    )
    if isinstance(idx, pd.DatetimeIndex):
        years = s["duration"].total_seconds() / (365.25 * 86400)
        with np.errstate(over="ignore"):  # minutes of data: compounding to a year overflows
            s["cagr_pct"] = (
                ((eq[-1] / eq[0]) ** (1 / years) - 1) * 100
                if years > 0 and eq[-1] > 0
                else math.nan
            )
    else:
        s["cagr_pct"] = math.nan
    s["sharpe"] = stats.sharpe_ratio(r, per_year)
    s["sortino"] = stats.sortino_ratio(r, per_year)
    dd = stats.drawdown_series(eq)
    max_dd = float(dd.max()) if dd.size else 0.0  # stats.max_drawdown, without a second pass
    s["calmar"] = ann / max_dd if max_dd > 0 else math.nan
    s["alpha_pct"], s["beta"] = alpha_beta(
        eq if at is None else eq[at], c if at is None else c[at], s["return_pct"],
        s["buy_hold_return_pct"],
    )  # fmt: skip
    s["max_drawdown_pct"] = -max_dd * 100
    depth, dur = drawdown_durations(dd, idx, clock_tz)
    s["avg_drawdown_pct"] = -float(depth.mean()) * 100 if len(depth) else 0.0
    s["max_drawdown_duration"] = round_to(max(dur), step) if dur else pd.NaT
    s["avg_drawdown_duration"] = round_to(sum(dur[1:], dur[0]) / len(dur), step) if dur else pd.NaT
    s.update(trade_metrics(trades, step))
    return pd.Series(s, dtype=object, name="metrics")


def trade_metrics(trades: pd.DataFrame, step: pd.Timedelta | None) -> dict[str, Any]:
    """The statistics of the closed trades (the same under both definitions but profit factor)."""
    s: dict[str, Any] = {}
    nt = len(trades)
    s["trades"] = nt
    pnl = trades["pnl"].to_numpy(dtype=float) if nt else np.zeros(0)
    ret = trades["return_pct"].to_numpy(dtype=float) if nt else np.zeros(0)
    win = float((pnl > 0).mean()) if nt else math.nan
    s["win_rate_pct"] = win * 100
    s["best_trade_pct"] = float(ret.max()) * 100 if nt else math.nan
    s["worst_trade_pct"] = float(ret.min()) * 100 if nt else math.nan
    s["avg_trade_pct"] = gmean(ret) * 100 if nt else math.nan
    if nt:
        durs = trades["duration"]
        s["max_trade_duration"] = round_to(durs.max(), step)
        s["avg_trade_duration"] = round_to(durs.mean(), step)
    else:
        s["max_trade_duration"] = s["avg_trade_duration"] = pd.NaT
    gross_win = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    s["profit_factor"] = gross_win / gross_loss if gross_loss > 0 else math.nan
    s["expectancy"] = float(pnl.mean()) if nt else math.nan
    s["expectancy_pct"] = float(ret.mean()) * 100 if nt else math.nan
    sd = float(np.std(pnl, ddof=1)) if nt > 1 else math.nan
    s["sqn"] = math.sqrt(nt) * float(pnl.mean()) / sd if nt > 1 and sd > 0 else math.nan
    avg_w = float(pnl[pnl > 0].mean()) if (pnl > 0).any() else math.nan
    avg_l = float(-pnl[pnl < 0].mean()) if (pnl < 0).any() else math.nan
    s["kelly"] = (
        stats.kelly_discrete(win, avg_w / avg_l) if avg_w == avg_w and avg_l == avg_l else math.nan
    )
    return s


def metrics_to_jsonable(m: pd.Series) -> dict[str, Any]:
    """The metrics as plain JSON values: timestamps ISO 8601, durations in seconds, NaN null."""
    out: dict[str, Any] = {}
    for k, v in m.items():
        if isinstance(v, pd.Timestamp):
            out[str(k)] = v.isoformat()
        elif isinstance(v, pd.Timedelta):
            out[str(k) + "_s"] = v.total_seconds()
        elif v is pd.NaT:
            out[str(k) + "_s"] = None
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            out[str(k)] = int(v)
        elif isinstance(v, (float, np.floating)):
            out[str(k)] = float(v) if math.isfinite(v) else None
        else:
            out[str(k)] = v if isinstance(v, (str, bool)) or v is None else str(v)
    return out
