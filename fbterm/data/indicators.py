"""Rolling indicators as pure, vectorised functions.

Every value at bar ``t`` uses only bars ``<= t`` (the tests append bars and check that no
earlier value moves), so a strategy can compute them once over a whole history. Inputs are a
Series (or anything array-like, which becomes a Series with a RangeIndex) or a DataFrame,
treated column by column; functions that need several bar columns take a bar DataFrame.
Leading values without enough history are NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast, overload

import numpy as np
import pandas as pd

Frame = pd.Series | pd.DataFrame


def _pd(x: Any) -> Frame:
    if isinstance(x, pd.Series | pd.DataFrame):
        return x
    return pd.Series(np.asarray(x, dtype=np.float64))


def _close(x: Any) -> pd.Series:
    if isinstance(x, pd.DataFrame):
        if "close" not in x.columns:
            raise ValueError("expected a Series or a bar DataFrame with a 'close' column")
        return x["close"]
    out = _pd(x)
    assert isinstance(out, pd.Series)  # not a DataFrame, so _pd made it a Series
    return out


def _check_window(n: int) -> int:
    if int(n) != n or n < 1:
        raise ValueError(f"window must be a positive integer, got {n!r}")
    return int(n)


def sma(x: Any, n: int) -> Frame:
    """Simple moving average: exactly ``rolling(n).mean()`` (what backtesting.py's SMA is)."""
    return _pd(x).rolling(_check_window(n)).mean()


def ema(x: Any, n: int) -> Frame:
    """Exponential moving average, ``alpha = 2 / (n + 1)``, seeded with the first value; NaN for the first n-1 bars."""
    n = _check_window(n)
    return _pd(x).ewm(span=n, adjust=False, min_periods=n).mean()


def rolling_std(x: Any, n: int, ddof: int = 1) -> Frame:
    """Rolling standard deviation over ``n`` bars (sample, ``ddof=1``, by default)."""
    return _pd(x).rolling(_check_window(n)).std(ddof=ddof)


@overload
def _wilder(x: pd.Series, n: int) -> pd.Series: ...
@overload
def _wilder(x: pd.DataFrame, n: int) -> pd.DataFrame: ...
def _wilder(x: Frame, n: int) -> Frame:
    """Wilder's smoothing: the first value is the mean of the first ``n`` values, then
    ``avg = avg_prev + (x - avg_prev) / n``. Leading NaNs (e.g. from a diff) are skipped."""
    if isinstance(x, pd.DataFrame):
        by_column: pd.DataFrame = x.apply(lambda col: _wilder(col, n))
        return by_column
    vals = x.to_numpy(dtype=np.float64)
    out = np.full(len(vals), np.nan)
    valid = np.flatnonzero(~np.isnan(vals))
    if len(valid) == 0 or len(vals) - valid[0] < n:
        return pd.Series(out, index=x.index, name=x.name)
    s0 = int(valid[0])
    seed_at = s0 + n - 1
    seq = vals[seed_at:].copy()
    seq[0] = vals[s0 : seed_at + 1].mean()
    # ewm(alpha=1/n, adjust=False) is exactly Wilder's recursion once seeded; it runs in C.
    out[seed_at:] = pd.Series(seq).ewm(alpha=1.0 / n, adjust=False).mean().to_numpy()
    return pd.Series(out, index=x.index, name=x.name)


def rsi(x: Any, n: int = 14) -> Frame:
    """Wilder's RSI (0-100) of a price Series (or a bar frame's close). A flat window gives 50."""
    n = _check_window(n)
    s = _close(x) if isinstance(x, pd.DataFrame) and "close" in x.columns else _pd(x)
    if isinstance(s, pd.DataFrame):
        # Price columns side by side: each is a price series of its own.
        by_column: pd.DataFrame = s.apply(lambda col: _rsi(col, n))
        return by_column
    return _rsi(s, n)


def _rsi(s: pd.Series, n: int) -> pd.Series:
    delta = s.diff()
    gain = _wilder(delta.clip(lower=0), n)
    loss = _wilder((-delta).clip(lower=0), n)
    total = gain + loss
    out = 100.0 * gain / total.where(total != 0)
    return out.where(~((total == 0) & gain.notna()), 50.0)


def true_range(bars: pd.DataFrame) -> pd.Series:
    """max(high - low, |high - previous close|, |low - previous close|); the first bar's is high - low."""
    h, lo, c = bars["high"], bars["low"], bars["close"]
    prev = c.shift(1)
    tr = pd.concat([h - lo, (h - prev).abs(), (lo - prev).abs()], axis=1).max(axis=1, skipna=True)
    return tr.rename("true_range")


def atr(bars: pd.DataFrame, n: int = 14) -> pd.Series:
    """Average true range with Wilder's smoothing, first defined at bar ``n-1``."""
    return _wilder(true_range(bars), _check_window(n)).rename(f"atr_{n}")


def bollinger(x: Any, n: int = 20, k: float = 2.0) -> pd.DataFrame:
    """Bollinger bands: ``mid`` = SMA(n), ``upper``/``lower`` = mid +/- k x population std."""
    s = _close(x)
    mid = s.rolling(_check_window(n)).mean()
    sd = s.rolling(n).std(ddof=0)
    return pd.DataFrame({"mid": mid, "upper": mid + k * sd, "lower": mid - k * sd})


def donchian(bars: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """Donchian channel over the last ``n`` bars including the current one (shift it by one
    bar for a breakout rule that compares a bar with the channel before it)."""
    n = _check_window(n)
    upper = bars["high"].rolling(n).max()
    lower = bars["low"].rolling(n).min()
    return pd.DataFrame({"upper": upper, "lower": lower, "mid": (upper + lower) / 2.0})


def returns(x: Any, periods: int = 1) -> Frame:
    """Simple returns ``p_t / p_{t-periods} - 1``."""
    return _pd(x).pct_change(periods=periods, fill_method=None)


def log_returns(x: Any, periods: int = 1) -> Frame:
    """Log returns ``ln(p_t / p_{t-periods})``."""
    p = _pd(x)
    # A ufunc on a Series or DataFrame returns the same kind (__array_ufunc__); numpy's stubs
    # only know ndarray.
    return cast(Frame, np.log(p)).diff(periods)


INDICATORS: dict[str, Callable[..., Frame]] = {
    "sma": sma, "ema": ema, "std": rolling_std, "rsi": rsi, "atr": atr,
    "bb": bollinger, "donchian": donchian, "ret": returns, "logret": log_returns,
}  # fmt: skip
