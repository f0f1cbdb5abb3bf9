"""Built-in strategies: streaming on_bar equals analyze bar for bar, no look-ahead, registry."""

from __future__ import annotations

import math
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from fbterm.data.simulated import synth_bars
from fbterm.model import Bar, Option, Right
from fbterm.pricing import bs_call
from fbterm.strategies import STRATEGIES, create_strategy, load_strategy_class
from fbterm.strategies.base import Sizing, StrategyContext, StrategyError, target_quantity
from fbterm.strategies.covered_call import pick_call, synthetic_chain

PARAMS = {
    "sma_cross": {"fast": 5, "slow": 12},
    "mean_reversion": {"window": 10, "entry_z": 1.2},
    "breakout": {"window": 10},
    "covered_call": {},
}


@pytest.fixture(scope="module", params=["1d", "1min"])
def bars(request) -> pd.DataFrame:
    # 1-minute bars on a 4-decimal grid: the SMAs tie exactly now and then, which only a
    # bit-exact streaming form gets right.
    return synth_bars(1500 if request.param == "1d" else 20_000, seed=11, bar_size=request.param)


def _stream(strat, df: pd.DataFrame) -> np.ndarray:
    strat.reset()
    ts = df.index.as_unit("ns").asi8 / 1e9
    o, h, lo, c, v = (df[k].to_numpy() for k in ("open", "high", "low", "close", "volume"))
    return np.array(
        [strat.on_bar(Bar("X", ts[i], o[i], h[i], lo[i], c[i], v[i])) for i in range(len(df))]
    )


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(
        np.array_equal(np.isnan(a), np.isnan(b))
        and np.array_equal(a[~np.isnan(a)], b[~np.isnan(b)])
    )


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_on_bar_matches_analyze(name: str, bars: pd.DataFrame) -> None:
    strat = create_strategy(name, None, PARAMS[name])
    vec = strat.analyze(bars)["target"].to_numpy()
    assert np.isfinite(vec).sum() > 5  # the strategy does trade on this data
    assert _same(vec, _stream(strat, bars))


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_no_look_ahead(name: str, bars: pd.DataFrame) -> None:
    strat = create_strategy(name, None, PARAMS[name])
    full = strat.analyze(bars)
    for cut in (200, 777, 1100):
        part = strat.analyze(bars.iloc[:cut])
        assert _same(part["target"].to_numpy(), full["target"].to_numpy()[:cut])
        for col in part.columns:
            np.testing.assert_array_equal(part[col].to_numpy(), full[col].to_numpy()[:cut])


def test_sma_cross_is_strict_and_matches_pandas() -> None:
    close = pd.Series([5.0, 4, 3, 2, 1, 2, 3, 4, 5, 4, 3, 2, 1, 1, 1, 1])
    idx = pd.date_range("2024-01-01", periods=len(close), freq="D", tz="UTC")
    df = pd.DataFrame(
        {"open": close, "high": close, "low": close, "close": close, "volume": 0.0}
    ).set_index(idx)
    sig = create_strategy("sma_cross", None, {"fast": 2, "slow": 3}).analyze(df)
    np.testing.assert_allclose(sig["sma_slow"].to_numpy(), close.rolling(3).mean().to_numpy())
    t = sig["target"].to_numpy()
    assert t[6] == 1.0 and t[10] == -1.0
    # flat prices at the end: fast == slow, an exact tie is no cross
    assert np.isnan(t[13:]).all()


def test_registry_and_user_class(tmp_path, monkeypatch) -> None:
    assert set(STRATEGIES) == {"sma_cross", "mean_reversion", "breakout", "covered_call"}
    (tmp_path / "mystrat.py").write_text(
        textwrap.dedent("""
        from fbterm.strategies.base import StrategyInterface, signal_frame
        class Always(StrategyInterface):
            name = "always"
            def analyze(self, bars):
                return signal_frame(bars.index, 1.0)
        class NotOne:
            pass
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = load_strategy_class("mystrat:Always")
    assert cls.__name__ == "Always"
    for spec, msg in [
        ("nope", "unknown strategy"),
        ("mystrat:Missing", "has no"),
        ("mystrat:NotOne", "not a StrategyInterface"),
        ("nomod_xyz:Foo", "not found"),
    ]:
        with pytest.raises(StrategyError, match=msg):
            load_strategy_class(spec)
    with pytest.raises(StrategyError, match="must be < slow"):
        create_strategy("sma_cross", None, {"fast": 30, "slow": 20})
    sys.modules.pop("mystrat", None)


def test_all_in_reversal_nets_closing_commission() -> None:
    s = Sizing("all_in")
    # flat: equity / (price * (1 + c))
    assert target_quantity(1, 100.0, 10_000.0, s, commission_fraction=0.01) == 99.0
    # reversing 50 long: the closing leg's commission (50 * 100 * 0.01 = 50) is not spendable
    q = target_quantity(-1, 100.0, 10_000.0, s, commission_fraction=0.01, position=50)
    assert q == -math.floor(9_950 * (1 - 1e-10) / 101)


def test_breakout_sizes_by_atr() -> None:
    strat = create_strategy(
        "breakout", None, {"window": 5, "exit_window": 3, "risk_pct": 1.0, "atr_mult": 2.0}
    )
    ctx = StrategyContext(
        "b", "X", price=50.0, ts=0.0, equity=100_000.0, position=0.0, sizing=Sizing("fraction", 1.0)
    )
    df = pd.DataFrame({"target": [1.0], "atr": [2.5]})
    [sig] = strat.execute(df, ctx)
    assert sig.quantity == math.floor(100_000 * 0.01 / (2 * 2.5))  # 200 units risk 1% at 2 ATR
    assert strat.execute(df, ctx) == []  # repeated target: no new order


def test_covered_call_sells_and_rolls() -> None:
    strat = create_strategy("covered_call", None, {"otm_pct": 5, "days": 30, "roll_days": 5})
    ts = pd.Timestamp("2024-03-04 15:00", tz="UTC").timestamp()
    chain = synthetic_chain("X", 100.0, ts, 0.3, 0.04)
    ctx = StrategyContext(
        "cc",
        "X",
        price=100.0,
        ts=ts,
        equity=50_000.0,
        position=0.0,
        sizing=Sizing("fraction", 1.0),
        positions={},
        option_chain=lambda s: chain,
    )
    sigs = strat.execute(1.0, ctx)
    stock, opt = sigs
    assert not stock.instrument.is_option and stock.quantity == 500  # 5 lots of 100
    assert isinstance(opt.instrument, Option) and opt.instrument.right is Right.CALL
    assert opt.quantity == 5 and opt.side.value == "SELL" and opt.instrument.strike >= 105
    ctx.position = 500.0
    ctx.positions = {"X": 500.0, opt.instrument.key: -5.0}
    assert strat.execute(float("nan"), ctx) == []  # covered: nothing to do
    # near expiry: buy it back and sell the next one
    ctx.positions = {"X": 500.0, opt.instrument.key: -5.0}
    ctx.ts = pd.Timestamp(opt.instrument.expiry, tz="UTC").timestamp() - 2 * 86400
    ctx.option_chain = lambda s: synthetic_chain("X", 100.0, ctx.ts, 0.3, 0.04)
    out = strat.execute(float("nan"), ctx)
    assert [s.side.value for s in out] == ["BUY", "SELL"]
    assert out[1].instrument.expiry > opt.instrument.expiry


def test_black_scholes_and_pick_call() -> None:
    # textbook value: S=K=100, T=1, r=5%, vol=20% -> 10.4506
    assert bs_call(100, 100, 1.0, 0.2, 0.05) == pytest.approx(10.4506, abs=1e-4)
    assert bs_call(120, 100, 0.0, 0.2) == 20.0
    ts = pd.Timestamp("2024-03-04", tz="UTC").timestamp()
    opt = pick_call(synthetic_chain("X", 100.0, ts, 0.3), 100.0, ts, 5.0, 30.0, 6.0)
    assert opt is not None and opt.strike >= 105
