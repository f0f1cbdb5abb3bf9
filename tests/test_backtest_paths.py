"""The fast path and the replay path produce the same trades, for every built-in strategy,
every sizing mode, with stops and with a risk gate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.inputs import BacktestError
from fbterm.config import StrategyRiskConfig
from fbterm.data.simulated import synth_bars
from fbterm.strategies import STRATEGIES, create_strategy
from fbterm.strategies.base import Sizing, StrategyInterface, signal_frame

PARAMS = {
    "sma_cross": {"fast": 5, "slow": 12},
    "mean_reversion": {"window": 10, "entry_z": 1.2},
    "breakout": {"window": 10},
    "covered_call": {},
}


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return synth_bars(1200, seed=5)


def _both(bars, name, **kw):
    out = []
    for mode in ("fast", "replay"):
        strat = create_strategy(name, None, PARAMS[name])
        out.append(CustomBacktester(bars, strat, mode=mode, **kw).run_backtest())
    return out


def _assert_same(a, b) -> None:
    pd.testing.assert_frame_equal(a.fills.drop(columns="reason"), b.fills.drop(columns="reason"))
    pd.testing.assert_frame_equal(a.trades, b.trades)
    np.testing.assert_array_equal(a.equity.to_numpy(), b.equity.to_numpy())


@pytest.mark.parametrize("name", sorted(STRATEGIES))
@pytest.mark.parametrize("commission", [0.002, "ib"])
def test_fast_equals_replay(bars, name, commission) -> None:
    fast, replay = _both(
        bars,
        name,
        cash=100_000,
        commission=commission,
        sizing="all_in" if name != "breakout" else "fraction",
    )
    assert len(fast.fills) > 3
    _assert_same(fast, replay)


@pytest.mark.parametrize("name", ["sma_cross", "mean_reversion", "breakout"])
def test_fast_equals_replay_on_tick_grid(name) -> None:
    grid = synth_bars(30_000, seed=8, bar_size="1min")
    fast, replay = _both(
        grid,
        name,
        cash=100_000,
        commission=0.0,
        sizing="all_in" if name != "breakout" else "fraction",
    )
    assert len(fast.fills) > 100
    _assert_same(fast, replay)


@pytest.mark.parametrize(
    "sizing", [Sizing("fixed", 50), Sizing("cash", 5_000), Sizing("fraction", 0.5)]
)
def test_sizing_modes_agree(bars, sizing) -> None:
    fast, replay = _both(bars, "sma_cross", cash=20_000, commission=0.001, sizing=sizing)
    _assert_same(fast, replay)
    if sizing.mode == "fixed":
        assert set(np.abs(fast.trades["size"])) == {50.0}


@pytest.mark.parametrize("name", ["sma_cross", "mean_reversion", "breakout"])
@pytest.mark.parametrize(
    "risk",
    [
        StrategyRiskConfig(stop_loss_pct=2.0, take_profit_pct=4.0),
        StrategyRiskConfig(trailing_stop_pct=3.0),
        StrategyRiskConfig(stop_loss_points=1.5, take_profit_points=3.0),
        StrategyRiskConfig(stop_loss_money=400.0, take_profit_money=900.0),
        StrategyRiskConfig(trailing_stop_points=2.0, take_profit_pct=6.0),
    ],
)
def test_stops_agree(bars, name, risk) -> None:
    fast, replay = _both(
        bars,
        name,
        cash=50_000,
        commission=0.001,
        risk=risk,
        sizing="all_in" if name != "breakout" else "fraction",
    )
    assert (fast.fills["reason"].isin(["stop", "take-profit"])).any()
    _assert_same(fast, replay)
    # Entries are labelled differently by the two paths; the stop exits are the same fills.
    exits = ["stop", "take-profit"]
    fast_exits = [r if r in exits else "" for r in fast.fills["reason"].astype(str)]
    replay_exits = [r if r in exits else "" for r in replay.fills["reason"].astype(str)]
    assert fast_exits == replay_exits
    _assert_same(fast, replay)


def _ramp(prices: list[float]) -> pd.DataFrame:
    idx = pd.date_range("2024-01-01", periods=len(prices), freq="D", tz="UTC")
    p = np.asarray(prices, dtype=float)
    return pd.DataFrame(
        {"open": p, "high": p * 1.001, "low": p * 0.999, "close": p, "volume": 1e6}, index=idx
    )


class _LongAt(StrategyInterface):
    name = "long_at"

    def analyze(self, bars):
        # Long on the third day (by time, so the default windowed on_bar agrees).
        t = np.where(bars.index == pd.Timestamp("2024-01-03", tz="UTC"), 1.0, np.nan)
        return signal_frame(bars.index, t)


def test_stop_loss_triggers_at_the_right_bar() -> None:
    # entry at bar 3's open (100); stop 5% = 95; bar 6's low 94.905 is the first below
    prices = [100, 100, 100, 100, 99, 97, 95, 90, 90]
    df = _ramp(prices)
    for mode in ("fast", "replay"):
        res = CustomBacktester(
            df,
            _LongAt(),
            cash=10_000,
            sizing=Sizing("fixed", 10),
            risk=StrategyRiskConfig(stop_loss_pct=5.0),
            mode=mode,
        ).run_backtest()
        f = res.fills
        assert f["bar"].tolist() == [3, 6]
        assert f["price"].iloc[1] == pytest.approx(95.0)  # at the stop, not the gap
        assert f["reason"].iloc[1] == "stop"


def test_take_profit_gap_fills_at_open() -> None:
    prices = [100, 100, 100, 100, 101, 120, 120]
    df = _ramp(prices)
    res = CustomBacktester(
        df,
        _LongAt(),
        cash=10_000,
        sizing=Sizing("fixed", 10),
        risk=StrategyRiskConfig(take_profit_pct=10.0),
    ).run_backtest()
    assert res.fills["bar"].tolist() == [3, 5]
    assert res.fills["price"].iloc[1] == 120.0  # opened beyond the target: the open


def test_risk_gate_rejects_and_paths_agree(bars) -> None:
    def gate(order):
        value = order.quantity * (order.signal_price or 0)
        return f"max_order_value: {value:,.0f} > 15,000" if value > 15_000 else None

    fast, replay = _both(
        bars, "sma_cross", cash=10_000, commission=0.0, sizing="fraction", risk_gate=gate
    )
    assert (
        len(fast.rejected) > 0 and fast.rejected["reason"].str.startswith("max_order_value").all()
    )
    _assert_same(fast, replay)


def test_signal_on_last_bar_never_fills_and_open_trade_is_marked(bars) -> None:
    res = CustomBacktester(
        bars, create_strategy("sma_cross", None, {"fast": 5, "slow": 12}), cash=10_000
    ).run_backtest()
    assert res.fills["bar"].max() <= len(bars) - 1
    pos = res.position.iloc[-1]
    assert pos != 0  # reversal system: always in the market after the first cross
    # the open trade counts in equity, marked at the last close, but not in trades
    assert len(res.trades) == len(res.fills) - 1
    last_fill = res.fills.iloc[-1]
    cash = 10_000 - (res.fills["quantity"] * res.fills["price"] + res.fills["commission"]).sum()
    assert res.equity.iloc[-1] == pytest.approx(cash + pos * bars["close"].iloc[-1])
    assert last_fill["quantity"] != 0


def test_errors_are_one_line(bars) -> None:
    with pytest.raises(BacktestError, match="window longer than the data"):
        CustomBacktester(bars.iloc[:10], create_strategy("sma_cross", None, {}))

    class Boom(StrategyInterface):
        name = "boom"

        def analyze(self, b):
            raise ZeroDivisionError("bad maths")

    with pytest.raises(BacktestError, match="boom raised ZeroDivisionError: bad maths"):
        CustomBacktester(bars, Boom()).run_backtest()
    bad = bars.copy()
    bad.iloc[5, 0] = -1.0
    with pytest.raises(BacktestError, match="must be finite and > 0"):
        CustomBacktester(bad, create_strategy("sma_cross", None, {}))
