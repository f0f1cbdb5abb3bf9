"""The SMA crossover reproduces backtesting.py's SmaCross exactly (all-in sizing, fraction
commission, next-open fills): same trades and final equity within 0.01%."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy  # a declared test dependency
from backtesting.lib import crossover

from fbterm.backtest.backtester import CustomBacktester
from fbterm.data.simulated import synth_bars
from fbterm.strategies import create_strategy


def _sma(values, n):
    return pd.Series(values).rolling(n).mean()


class SmaCross(Strategy):
    n1 = 10
    n2 = 20

    def init(self):
        self.sma1 = self.I(_sma, self.data.Close, self.n1)
        self.sma2 = self.I(_sma, self.data.Close, self.n2)

    def next(self):
        if crossover(self.sma1, self.sma2):
            self.position.close()
            self.buy()
        elif crossover(self.sma2, self.sma1):
            self.position.close()
            self.sell()


@pytest.mark.parametrize(
    ("seed", "fast", "slow", "commission"),
    [
        (1, 10, 20, 0.002),
        (2, 5, 30, 0.002),
        (3, 3, 7, 0.0),
        (4, 20, 50, 0.001),
        (5, 10, 20, 0.0005),
    ],
)
def test_matches_backtesting_py(seed, fast, slow, commission) -> None:
    bars = synth_bars(1500, seed=seed, volatility=0.4)
    data = bars.rename(columns=str.capitalize)
    data.index = data.index.tz_localize(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Backtest(data, SmaCross, cash=10_000, commission=commission).run(n1=fast, n2=slow)
    rt = ref["_trades"]
    assert len(rt) > 10
    for mode in ("fast", "replay"):
        res = CustomBacktester(
            bars,
            create_strategy("sma_cross", None, {"fast": fast, "slow": slow}),
            cash=10_000,
            commission=commission,
            sizing="all_in",
            mode=mode,
        ).run_backtest()
        t, m = res.trades, res.metrics
        assert len(t) == len(rt) == m["trades"] == ref["# Trades"]
        np.testing.assert_array_equal(t["entry_bar"], rt["EntryBar"])
        np.testing.assert_array_equal(t["exit_bar"], rt["ExitBar"])
        np.testing.assert_array_equal(t["size"], rt["Size"])
        np.testing.assert_allclose(t["entry_price"], rt["EntryPrice"], rtol=1e-12)
        np.testing.assert_allclose(t["exit_price"], rt["ExitPrice"], rtol=1e-12)
        np.testing.assert_allclose(t["pnl"], rt["PnL"], rtol=1e-9, atol=1e-6)
        np.testing.assert_allclose(t["return_pct"], rt["ReturnPct"], rtol=1e-9, atol=1e-12)
        assert m["equity_final"] == pytest.approx(ref["Equity Final [$]"], rel=1e-4)
        np.testing.assert_allclose(
            res.equity.to_numpy(), ref["_equity_curve"]["Equity"].to_numpy(), rtol=1e-9
        )
        assert m["return_pct"] == pytest.approx(ref["Return [%]"], rel=1e-6)
        assert m["buy_hold_return_pct"] == pytest.approx(ref["Buy & Hold Return [%]"], rel=1e-12)
        assert m["win_rate_pct"] == pytest.approx(ref["Win Rate [%]"])
        assert m["max_drawdown_pct"] == pytest.approx(ref["Max. Drawdown [%]"], rel=1e-9)
        assert m["equity_peak"] == pytest.approx(ref["Equity Peak [$]"], rel=1e-9)
        assert m["return_ann_pct"] == pytest.approx(ref["Return (Ann.) [%]"], rel=1e-6)
        assert m["sqn"] == pytest.approx(ref["SQN"], rel=1e-6)
        if commission:
            # backtesting.py counts the commissions of closed trades only
            assert t["commission"].sum() == pytest.approx(ref["Commissions [$]"], rel=1e-9)


def test_matches_backtesting_py_on_tick_grid_with_ties() -> None:
    # 1-minute bars on a 4-decimal grid: the SMAs tie exactly at times, and a second cross
    # the same way closes and re-opens the position in backtesting.py; so must we.
    bars = synth_bars(50_000, seed=42, bar_size="1min")
    data = bars.rename(columns=str.capitalize)
    data.index = data.index.tz_localize(None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = Backtest(data, SmaCross, cash=10_000, commission=0.001).run(n1=10, n2=20)
    rt = ref["_trades"]
    for mode in ("fast", "replay"):
        res = CustomBacktester(
            bars,
            create_strategy("sma_cross", None, {"fast": 10, "slow": 20}),
            cash=10_000,
            commission=0.001,
            mode=mode,
        ).run_backtest()
        assert len(res.trades) == len(rt)
        np.testing.assert_array_equal(res.trades["entry_bar"], rt["EntryBar"])
        np.testing.assert_array_equal(res.trades["size"], rt["Size"])
        assert res.metrics["equity_final"] == pytest.approx(ref["Equity Final [$]"], rel=1e-4)
