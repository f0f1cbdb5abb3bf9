"""Sharpe, Sortino and max drawdown against formulas written out here, and the other metrics
on a hand-built equity curve."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fbterm.backtest.metrics import METRIC_LABELS, metrics_to_jsonable, performance_metrics
from fbterm.backtest.trades import TRADE_COLUMNS


def _trades(pnls: list[float], rets: list[float], idx: pd.DatetimeIndex) -> pd.DataFrame:
    n = len(pnls)
    df = pd.DataFrame(
        {
            "instrument": ["X"] * n,
            "size": [1.0] * n,
            "entry_bar": list(range(n)),
            "exit_bar": [i + 1 for i in range(n)],
            "entry_time": idx[:n],
            "exit_time": idx[1 : n + 1],
            "entry_price": [1.0] * n,
            "exit_price": [1.0] * n,
            "pnl": pnls,
            "return_pct": rets,
            "commission": [0.0] * n,
        }
    )
    df["duration"] = df["exit_time"] - df["entry_time"]
    return df[TRADE_COLUMNS]


def test_sharpe_sortino_drawdown_daily() -> None:
    rng = np.random.default_rng(3)
    idx = pd.bdate_range("2021-01-01", periods=600, tz="UTC")
    r = rng.normal(0.0004, 0.01, len(idx) - 1)
    eq = pd.Series(10_000 * np.cumprod(np.r_[1.0, 1 + r]), index=idx)
    m = performance_metrics(eq, _trades([], [], idx), eq, warmup_bar=0)
    # the returns the metrics see: day over day
    rets = [eq.iloc[i] / eq.iloc[i - 1] - 1 for i in range(1, len(eq))]
    mean = sum(rets) / len(rets)
    sd = math.sqrt(sum((x - mean) ** 2 for x in rets) / (len(rets) - 1))
    down = math.sqrt(sum(min(x, 0.0) ** 2 for x in rets) / len(rets))
    assert m["sharpe"] == pytest.approx(mean / sd * math.sqrt(252), rel=1e-9)
    assert m["sortino"] == pytest.approx(mean / down * math.sqrt(252), rel=1e-9)
    peak, worst = -math.inf, 0.0
    for v in eq:
        peak = max(peak, v)
        worst = max(worst, 1 - v / peak)
    assert m["max_drawdown_pct"] == pytest.approx(-worst * 100, rel=1e-12)
    assert m["volatility_ann_pct"] == pytest.approx(sd * math.sqrt(252) * 100, rel=1e-9)
    gmean = math.exp(sum(math.log(1 + x) for x in rets) / len(rets)) - 1
    assert m["return_ann_pct"] == pytest.approx(((1 + gmean) ** 252 - 1) * 100, rel=1e-9)
    assert m["calmar"] == pytest.approx(((1 + gmean) ** 252 - 1) / worst, rel=1e-9)


def test_intraday_uses_daily_returns() -> None:
    idx = pd.date_range(
        "2024-01-01", periods=4 * 24 * 10, freq="15min", tz="UTC"
    )  # 10 days, weekends in
    eq = pd.Series(np.linspace(100, 110, len(idx)), index=idx)
    m = performance_metrics(eq, _trades([], [], idx), eq)
    daily = eq.resample("D").last().to_numpy()
    rets = daily[1:] / daily[:-1] - 1
    assert m["sharpe"] == pytest.approx(rets.mean() / rets.std(ddof=1) * math.sqrt(365), rel=1e-9)
    assert m["max_drawdown_pct"] == 0.0 and math.isnan(m["sortino"])


def test_drawdown_episodes_and_trade_stats() -> None:
    idx = pd.date_range("2024-01-01", periods=8, freq="D", tz="UTC")
    eq = pd.Series([100, 110, 99, 110, 120, 90, 96, 121.0], index=idx)
    tr = _trades([10.0, -5.0, 20.0, -5.0], [0.1, -0.05, 0.2, -0.05], idx)
    m = performance_metrics(eq, tr, eq, commissions=3.5)
    assert m["max_drawdown_pct"] == pytest.approx(-25.0)
    assert m["avg_drawdown_pct"] == pytest.approx(-(10 + 25) / 2)
    assert m["max_drawdown_duration"] == pd.Timedelta(days=3)  # peak day 4 -> recovered day 7
    assert m["trades"] == 4 and m["win_rate_pct"] == 50.0
    assert m["profit_factor"] == pytest.approx(30 / 10)
    assert m["expectancy"] == pytest.approx(5.0)
    pnl = np.array([10.0, -5.0, 20.0, -5.0])
    assert m["sqn"] == pytest.approx(2 * pnl.mean() / pnl.std(ddof=1))
    assert m["best_trade_pct"] == pytest.approx(20.0) and m["worst_trade_pct"] == pytest.approx(
        -5.0
    )
    assert m["kelly"] == pytest.approx(0.5 - 0.5 / (15 / 5))
    assert m["commissions"] == 3.5 and m["return_pct"] == pytest.approx(21.0)
    assert set(METRIC_LABELS) <= set(m.index)
    js = metrics_to_jsonable(m)
    assert js["max_drawdown_duration_s"] == 3 * 86400 and js["trades"] == 4
