"""Performance metrics of a backtest, as one pandas Series with snake_case keys.

Definitions (r: periodic returns of the equity curve: daily closes for intraday or daily bars,
weekly/monthly/yearly for coarser bars; A: periods per year: 252 trading days, 365 when the
data has weekends, 52 / 12 / 1 for weekly / monthly / yearly bars):

* return_pct = equity_final / equity_start - 1; buy_hold_return_pct from the close of the first
  bar after the strategy's warm-up (``warmup_bar``) to the last close;
* return_ann_pct = (1 + geometric mean of r) ** A - 1 (compounded, as empyrical's annual_return);
* volatility_ann_pct = std(r, ddof=1) * sqrt(A);
* cagr_pct = (equity_final / equity_start) ** (1 / years) - 1, years of calendar time;
* sharpe = mean(r) / std(r, ddof=1) * sqrt(A), risk-free rate 0;
* sortino = mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(A) (downside deviation, target 0);
* max_drawdown_pct = -max(1 - equity / running peak); calmar = return_ann / |max drawdown|;
  avg_drawdown_pct: mean of each drawdown episode's depth; durations run from the peak to the
  recovery (or to the end);
* win_rate_pct: share of closed trades with pnl > 0; best/worst_trade_pct: trade return_pct;
  avg_trade_pct: geometric mean of trade returns; profit_factor = gross profit / gross loss
  (currency); expectancy = mean pnl per trade (currency), expectancy_pct = mean trade return;
  sqn = sqrt(trades) * mean(pnl) / std(pnl, ddof=1); kelly = W - (1 - W) / (avg win / avg loss);
* exposure_pct: share of bars with a position open at the close or a trade exiting on it.

Sharpe, Sortino, drawdowns, periods per year and Kelly come from :mod:`fbterm.stats`, the one
implementation the live metrics use too; this module picks the returns and the conventions.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fbterm import stats

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
    "return_pct": "Return [%]",
    "buy_hold_return_pct": "Buy & Hold Return [%]",
    "return_ann_pct": "Return (Ann.) [%]",
    "volatility_ann_pct": "Volatility (Ann.) [%]",
    "cagr_pct": "CAGR [%]",
    "sharpe": "Sharpe Ratio",
    "sortino": "Sortino Ratio",
    "calmar": "Calmar Ratio",
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


def periodic_returns(equity: pd.Series) -> tuple[np.ndarray, float]:
    """(returns, periods per year) used by the annualised metrics."""
    ends, per_year = period_ends(equity.index)
    eq = equity.to_numpy(dtype=float)
    return stats.finite(stats.simple_returns(eq if ends is None else eq[ends])), per_year


def period_ends(idx: pd.Index) -> tuple[np.ndarray | None, float]:
    """(the bars whose equity the periodic returns are taken from, None for every bar;
    periods per year). Depends on the index only, so a sweep computes it once for all runs."""
    if isinstance(idx, pd.DatetimeIndex) and len(idx) > 1:
        step = pd.Timedelta(
            int(np.median(np.diff(idx.as_unit("ns").asi8[: min(len(idx), 10_000)]))), "ns"
        )
        days = step.days
        # Day of week from epoch days (1970-01-01 was a Thursday, Monday = 0): the same as
        # DatetimeIndex.day_of_week at a tenth of the cost on a million bars.
        dow = (idx.as_unit("ns").asi8 // 86_400_000_000_000 + 3) % 7
        weekends = float((dow >= 5).mean()) > 2 / 7 * 0.6
        # Whole days, not step.total_seconds(): a float of nanoseconds can round up to the next
        # day, and the calendar convention classifies by whole days.
        per_year = stats.periods_per_year(days * 86400.0, "calendar", weekends=weekends)
        freq = "W" if days == 7 else "ME" if 28 <= days <= 31 else "YE" if days >= 365 else "D"
        if days >= 1 and freq == "D":
            return None, per_year
        if freq == "D":
            # Last bar of each calendar day (UTC): resample('D').last() without the cost.
            day = idx.as_unit("ns").asi8 // 86_400_000_000_000
            return np.flatnonzero(np.r_[day[1:] != day[:-1], True]), per_year
        pos = pd.Series(np.arange(len(idx), dtype=np.float64), index=idx)
        return pos.resample(freq).last().dropna().to_numpy(dtype=np.int64), per_year
    return None, 252.0


def drawdown_durations(dd: np.ndarray, index: pd.Index) -> tuple[np.ndarray, list[Any]]:
    """(depth of each drawdown episode, its duration from peak to recovery or the end), the
    durations as Timedeltas on a DatetimeIndex, else in bars."""
    depth, peak_at, end_at = stats.drawdown_episodes(dd)
    if not len(depth):
        return depth, []
    if isinstance(index, pd.DatetimeIndex):
        return depth, list(index[end_at] - index[peak_at])
    return depth, list(end_at - peak_at)


def _gmean(x: np.ndarray) -> float:
    g = x + 1.0
    if len(g) == 0:
        return math.nan
    if np.any(g <= 0):
        return 0.0
    return float(np.exp(np.log(g).sum() / len(g)) - 1)


def performance_metrics(
    equity: pd.Series,
    trades: pd.DataFrame,
    close: pd.Series,
    *,
    warmup_bar: int = 0,
    position: pd.Series | None = None,
    commissions: float = 0.0,
) -> pd.Series:
    """All metrics of one backtest (see the module docstring for the definitions)."""
    eq = equity.to_numpy(dtype=float)
    idx = equity.index
    n = len(eq)
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
    s["commissions"] = float(commissions)
    s["return_pct"] = (eq[-1] - eq[0]) / eq[0] * 100
    c = close.to_numpy(dtype=float)
    w = min(max(int(warmup_bar), 0), n - 1)
    s["buy_hold_return_pct"] = (c[-1] - c[w]) / c[w] * 100
    r, per_year = periodic_returns(equity)
    g = _gmean(r) if len(r) else 0.0
    ann = (1 + g) ** per_year - 1 if len(r) else math.nan
    s["return_ann_pct"] = ann * 100
    s["volatility_ann_pct"] = (
        float(np.std(r, ddof=1)) * math.sqrt(per_year) * 100 if len(r) > 1 else math.nan
    )
    if isinstance(idx, pd.DatetimeIndex):
        years = s["duration"].total_seconds() / (365.25 * 86400)
        s["cagr_pct"] = (
            ((eq[-1] / eq[0]) ** (1 / years) - 1) * 100 if years > 0 and eq[-1] > 0 else math.nan
        )
    else:
        s["cagr_pct"] = math.nan
    s["sharpe"] = stats.sharpe_ratio(r, per_year)
    s["sortino"] = stats.sortino_ratio(r, per_year)
    dd = stats.drawdown_series(eq)
    max_dd = float(dd.max()) if dd.size else 0.0  # stats.max_drawdown, without a second pass
    s["calmar"] = ann / max_dd if max_dd > 0 else math.nan
    s["max_drawdown_pct"] = -max_dd * 100
    depth, dur = drawdown_durations(dd, idx)
    s["avg_drawdown_pct"] = -float(depth.mean()) * 100 if len(depth) else 0.0
    s["max_drawdown_duration"] = max(dur) if dur else pd.NaT
    s["avg_drawdown_duration"] = (sum(dur[1:], dur[0]) / len(dur)) if dur else pd.NaT
    nt = len(trades)
    s["trades"] = nt
    pnl = trades["pnl"].to_numpy(dtype=float) if nt else np.zeros(0)
    ret = trades["return_pct"].to_numpy(dtype=float) if nt else np.zeros(0)
    win = float((pnl > 0).mean()) if nt else math.nan
    s["win_rate_pct"] = win * 100
    s["best_trade_pct"] = float(ret.max()) * 100 if nt else math.nan
    s["worst_trade_pct"] = float(ret.min()) * 100 if nt else math.nan
    s["avg_trade_pct"] = _gmean(ret) * 100 if nt else math.nan
    if nt:
        durs = trades["duration"]
        s["max_trade_duration"] = durs.max()
        s["avg_trade_duration"] = durs.mean()
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
    return pd.Series(s, dtype=object, name="metrics")


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
