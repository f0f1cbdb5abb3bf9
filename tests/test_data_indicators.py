"""Indicators against independent loop formulas, and the no-look-ahead property for each."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from fbterm.data import indicators as ind
from fbterm.data.simulated import synth_bars


def random_bars(n: int, seed: int) -> pd.DataFrame:
    return synth_bars(n, bar_size="1h", seed=seed, volatility=0.8)


def loop_sma(x: list[float], n: int) -> list[float]:
    return [math.nan if i < n - 1 else sum(x[i - n + 1 : i + 1]) / n for i in range(len(x))]


def loop_ema(x: list[float], n: int) -> list[float]:
    a, out, e = 2 / (n + 1), [], x[0]
    for i, v in enumerate(x):
        e = v if i == 0 else a * v + (1 - a) * e
        out.append(e if i >= n - 1 else math.nan)
    return out


def loop_wilder(x: list[float], n: int, first: int) -> list[float]:
    """Wilder's average of x[first:], seeded with the plain mean of its first n values."""
    out = [math.nan] * len(x)
    if len(x) - first < n:
        return out
    avg = sum(x[first : first + n]) / n
    out[first + n - 1] = avg
    for i in range(first + n, len(x)):
        avg = (avg * (n - 1) + x[i]) / n
        out[i] = avg
    return out


def loop_rsi(c: list[float], n: int) -> list[float]:
    gains = [math.nan] + [max(c[i] - c[i - 1], 0.0) for i in range(1, len(c))]
    losses = [math.nan] + [max(c[i - 1] - c[i], 0.0) for i in range(1, len(c))]
    g, lo = loop_wilder(gains, n, 1), loop_wilder(losses, n, 1)
    out = []
    for a, b in zip(g, lo, strict=True):
        if math.isnan(a):
            out.append(math.nan)
        elif b == 0:
            out.append(100.0 if a > 0 else 50.0)
        else:
            out.append(100 - 100 / (1 + a / b))
    return out


def loop_atr(h: list[float], lo: list[float], c: list[float], n: int) -> list[float]:
    tr = [h[0] - lo[0]] + [
        max(h[i] - lo[i], abs(h[i] - c[i - 1]), abs(lo[i] - c[i - 1])) for i in range(1, len(c))
    ]
    return loop_wilder(tr, n, 0)


def loop_std(x: list[float], n: int, ddof: int) -> list[float]:
    out = []
    for i in range(len(x)):
        if i < n - 1:
            out.append(math.nan)
            continue
        w = x[i - n + 1 : i + 1]
        m = sum(w) / n
        out.append(math.sqrt(sum((v - m) ** 2 for v in w) / (n - ddof)))
    return out


def close_enough(a: pd.Series | np.ndarray, b: list[float]) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=1e-10, atol=1e-9, equal_nan=True)  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_indicators_match_independent_formulas(seed: int) -> None:
    bars = random_bars(300, seed)
    c, h, lo = bars["close"].tolist(), bars["high"].tolist(), bars["low"].tolist()
    close_enough(ind.sma(bars["close"], 10), loop_sma(c, 10))
    close_enough(ind.ema(bars["close"], 12), loop_ema(c, 12))
    close_enough(ind.rolling_std(bars["close"], 20), loop_std(c, 20, 1))
    close_enough(ind.rsi(bars["close"], 14), loop_rsi(c, 14))
    close_enough(ind.atr(bars, 14), loop_atr(h, lo, c, 14))
    bb = ind.bollinger(bars["close"], 20, 2.5)
    mid, sd = loop_sma(c, 20), loop_std(c, 20, 0)
    close_enough(bb["mid"], mid)
    close_enough(bb["upper"], [m + 2.5 * s for m, s in zip(mid, sd, strict=True)])
    close_enough(bb["lower"], [m - 2.5 * s for m, s in zip(mid, sd, strict=True)])
    dc = ind.donchian(bars, 5)
    close_enough(dc["upper"], [math.nan] * 4 + [max(h[i - 4 : i + 1]) for i in range(4, len(h))])
    close_enough(dc["lower"], [math.nan] * 4 + [min(lo[i - 4 : i + 1]) for i in range(4, len(lo))])
    close_enough(
        ind.returns(bars["close"]), [math.nan] + [c[i] / c[i - 1] - 1 for i in range(1, len(c))]
    )
    close_enough(
        ind.log_returns(bars["close"]),
        [math.nan] + [math.log(c[i] / c[i - 1]) for i in range(1, len(c))],
    )


def test_sma_is_exactly_pandas_rolling_mean_like_backtesting_py() -> None:
    x = np.random.default_rng(5).normal(100, 5, 1000)
    ours = ind.sma(x, 7)
    pd.testing.assert_series_equal(ours, pd.Series(x).rolling(7).mean(), check_exact=True)
    import backtesting.test as bt  # a declared test dependency

    np.testing.assert_array_equal(ours.to_numpy(), np.asarray(bt.SMA(x, 7)))


def test_rsi_edge_cases() -> None:
    flat = pd.Series([10.0] * 20)
    assert ind.rsi(flat, 5).dropna().eq(50.0).all()
    up = pd.Series(np.arange(1.0, 21.0))
    assert ind.rsi(up, 5).dropna().eq(100.0).all()
    assert ind.rsi(up, 5).iloc[:5].isna().all() and ind.rsi(up, 5).iloc[5] == 100.0
    down = pd.Series(np.arange(20.0, 0.0, -1.0))
    assert ind.rsi(down, 5).dropna().eq(0.0).all()
    assert ind.rsi(pd.Series([1.0, 2.0]), 5).isna().all()


def test_dataframes_are_handled_column_by_column() -> None:
    bars = random_bars(50, 3)
    out = ind.sma(bars[["open", "close"]], 5)
    assert isinstance(out, pd.DataFrame)
    pd.testing.assert_series_equal(out["close"], ind.sma(bars["close"], 5))
    pd.testing.assert_series_equal(ind.rsi(bars, 14), ind.rsi(bars["close"], 14))
    with pytest.raises(ValueError, match="positive integer"):
        ind.sma(bars["close"], 0)


INDICATORS: dict[str, Callable[[pd.DataFrame], pd.Series | pd.DataFrame]] = {
    "sma": lambda b: ind.sma(b["close"], 10),
    "ema": lambda b: ind.ema(b["close"], 10),
    "rolling_std": lambda b: ind.rolling_std(b["close"], 10),
    "rsi": lambda b: ind.rsi(b["close"], 14),
    "atr": lambda b: ind.atr(b, 14),
    "true_range": ind.true_range,
    "bollinger": lambda b: ind.bollinger(b["close"], 20),
    "donchian": lambda b: ind.donchian(b, 20),
    "returns": lambda b: ind.returns(b["close"]),
    "log_returns": lambda b: ind.log_returns(b["close"]),
}


@pytest.mark.parametrize("name", sorted(INDICATORS))
@pytest.mark.parametrize("cut", [1, 13, 14, 15, 60, 199])
def test_no_look_ahead(name: str, cut: int) -> None:
    """Values at bars < cut are the same whether or not the bars after cut exist."""
    full = random_bars(200, 11)
    fn = INDICATORS[name]
    whole = fn(full)
    prefix = fn(full.iloc[:cut])
    pd.testing.assert_frame_equal(
        pd.DataFrame(whole).iloc[:cut], pd.DataFrame(prefix), check_exact=False, rtol=1e-12
    )
    # Changing the future must not change the past either.
    shocked = full.copy()
    shocked.iloc[cut:, :4] *= 3.0
    pd.testing.assert_frame_equal(
        pd.DataFrame(fn(shocked)).iloc[:cut], pd.DataFrame(prefix), check_exact=False, rtol=1e-12
    )
