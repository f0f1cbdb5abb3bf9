"""O(1) streaming indicators for ``on_bar`` and the vectorised twins ``analyze`` uses.

The streaming forms must agree with the vectorised ones bar for bar, so a strategy trades the
same live as in a backtest. Running sums drift by rounding over millions of bars; they are
resummed exactly from the window every ``n`` updates, which keeps the error at a few ulps
while the cost stays O(1) amortised.
"""

from __future__ import annotations

import math
from collections import deque
from typing import cast

import numpy as np
import pandas as pd


def sma(values: pd.Series, n: int) -> pd.Series:
    """Simple moving average, equal to ``values.rolling(n).mean()`` (the data package's when built)."""
    try:
        from fbterm.data.indicators import sma as data_sma
    except ImportError:
        return values.rolling(n).mean()
    return cast(pd.Series, data_sma(values, n))  # a Series in, a Series out


class RollingMean:
    """Mean and population variance of the last ``n`` values; NaN until ``n`` are seen.

    Sums are kept of ``x - K`` with ``K`` the first value (the shifted-data algorithm), so the
    variance keeps its digits when the price dwarfs its spread.
    """

    __slots__ = ("_k", "_since", "_sum", "_sumsq", "_win", "n")

    def __init__(self, n: int):
        self.n = n
        self._win: deque[float] = deque(maxlen=n)
        self._sum = 0.0
        self._sumsq = 0.0
        self._since = 0
        self._k: float | None = None

    def update(self, x: float) -> float:
        if self._k is None:
            self._k = x
        d = x - self._k
        win = self._win
        if len(win) == self.n:
            old = win[0]
            self._sum -= old
            self._sumsq -= old * old
        win.append(d)
        self._sum += d
        self._sumsq += d * d
        self._since += 1
        if self._since >= self.n:
            # Exact resum every n updates: bounds rounding drift at O(1) amortised cost.
            self._sum = math.fsum(win)
            self._sumsq = math.fsum(v * v for v in win)
            self._since = 0
        return self.mean

    @property
    def ready(self) -> bool:
        return len(self._win) == self.n

    @property
    def mean(self) -> float:
        if len(self._win) < self.n:
            return math.nan
        return self._k + self._sum / self.n  # type: ignore[operator]

    def std(self) -> float:
        """Population standard deviation (ddof=0) of the window."""
        if not self.ready:
            return math.nan
        m = self._sum / self.n
        var = self._sumsq / self.n - m * m
        return math.sqrt(var) if var > 0.0 else 0.0


class RollingExtreme:
    """Max (or min) of the last ``n`` values in amortised O(1): a monotonic deque."""

    __slots__ = ("_i", "_q", "_sign", "n")

    def __init__(self, n: int, *, is_max: bool = True):
        self.n = n
        self._q: deque[tuple[int, float]] = deque()
        self._i = 0
        self._sign = 1.0 if is_max else -1.0

    def update(self, x: float) -> float:
        q, s = self._q, self._sign
        v = s * x
        while q and q[-1][1] <= v:
            q.pop()
        q.append((self._i, v))
        if q[0][0] <= self._i - self.n:
            q.popleft()
        self._i += 1
        if self._i < self.n:
            return math.nan
        return s * q[0][1]


def rolling_std(values: pd.Series, n: int) -> pd.Series:
    """Population standard deviation over ``n`` bars (ddof=0)."""
    return values.rolling(n).std(ddof=0)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Wilder's true range; the first bar has no previous close and uses high - low."""
    prev = np.empty_like(close)
    prev[0] = np.nan
    prev[1:] = close[:-1]
    tr: np.ndarray = np.fmax(high - low, np.fmax(np.abs(high - prev), np.abs(low - prev)))
    return tr


class PandasRollingMean:
    """``Series.rolling(n).mean()`` one value at a time, bit for bit.

    The same operations in the same order as pandas' fixed-window ``roll_mean``: Kahan
    compensated adds and removes (separate compensations), the run-of-equal-values shortcut
    and the sign guards. Bit equality matters: two SMAs of prices on a tick grid tie often,
    and a last-ulp difference would turn a tie (no cross) into a cross.
    """

    __slots__ = ("_ca", "_cr", "_neg", "_nobs", "_prev", "_same", "_sum", "_win", "n")

    def __init__(self, n: int):
        self.n = n
        self._win: deque[float] = deque()
        self._sum = 0.0
        self._ca = 0.0
        self._cr = 0.0
        self._nobs = 0
        self._neg = 0
        self._same = 0
        self._prev = math.nan

    def update(self, val: float) -> float:
        win = self._win
        if not win and self._nobs == 0:
            self._prev = val
        if len(win) == self.n:
            old = win.popleft()
            if old == old:
                self._nobs -= 1
                y = -old - self._cr
                t = self._sum + y
                self._cr = t - self._sum - y
                self._sum = t
                if math.copysign(1.0, old) < 0:
                    self._neg -= 1
        win.append(val)
        if val == val:
            self._nobs += 1
            y = val - self._ca
            t = self._sum + y
            self._ca = t - self._sum - y
            self._sum = t
            if math.copysign(1.0, val) < 0:
                self._neg += 1
            self._same = self._same + 1 if val == self._prev else 1
            self._prev = val
        nobs = self._nobs
        if nobs < self.n or nobs <= 0:
            return math.nan
        result = self._sum / nobs
        if self._same >= nobs:
            return self._prev
        if self._neg == 0 and result < 0:
            return 0.0
        if self._neg == nobs and result > 0:
            return 0.0
        return result


def window_mean_std(values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population std over ``n`` bars, summed left to right in each window.

    The order of operations is that of :func:`window_stats` on one window, so the streaming
    form agrees bit for bit (n vectorised passes: fine for the windows strategies use)."""
    m = len(values)
    mean = np.full(m, np.nan)
    std = np.full(m, np.nan)
    if m < n:
        return mean, std
    k = m - n + 1
    acc = np.zeros(k)
    for j in range(n):
        acc = acc + values[j : j + k]
    mu = acc / n
    sq = np.zeros(k)
    for j in range(n):
        d = values[j : j + k] - mu
        sq = sq + d * d
    mean[n - 1 :] = mu
    std[n - 1 :] = np.sqrt(sq / n)
    return mean, std


def window_stats(win: deque[float] | list[float], n: int) -> tuple[float, float]:
    """Mean and population std of one full window, in :func:`window_mean_std`'s order."""
    acc = 0.0
    for v in win:
        acc = acc + v
    mu = acc / n
    sq = 0.0
    for v in win:
        d = v - mu
        sq = sq + d * d
    return mu, math.sqrt(sq / n)
