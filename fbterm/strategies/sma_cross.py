"""SMA crossover, long/short reversal: the classic.

Target +1 on the bar where the fast SMA crosses above the slow one, -1 where it crosses below,
NaN (hold) otherwise. A cross is strict on both bars, as backtesting.py's ``crossover``:
fast[t-1] < slow[t-1] and fast[t] > slow[t]; an exact tie is no cross.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd

from fbterm.model import Bar
from fbterm.strategies._streaming import PandasRollingMean, sma
from fbterm.strategies.base import Param, StrategyError, StrategyInterface, signal_frame


def crossover_targets(fast: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """+1 where ``fast`` crosses above ``slow``, -1 below, NaN elsewhere (pure, vectorised)."""
    out = np.full(len(fast), np.nan)
    if len(fast) < 2:
        return out
    f0, s0, f1, s1 = fast[:-1], slow[:-1], fast[1:], slow[1:]
    with np.errstate(invalid="ignore"):
        up = (f0 < s0) & (f1 > s1)
        down = (f0 > s0) & (f1 < s1)
    body = out[1:]
    body[up] = 1.0
    body[down] = -1.0
    return out


class SmaCross(StrategyInterface):
    name: ClassVar[str] = "sma_cross"
    description: ClassVar[str] = "Long when the fast SMA crosses above the slow one, short below."
    # Every cross is an instruction: a second cross the same way (after an exact tie) closes
    # and re-opens, as backtesting.py's SmaCross does.
    reenter_on_repeat: ClassVar[bool] = True
    params: ClassVar[tuple[Param, ...]] = (
        Param("fast", int, 10, "fast SMA window (bars)", min=1),
        Param("slow", int, 20, "slow SMA window (bars)", min=2),
    )

    def check(self) -> None:
        if self.p["fast"] >= self.p["slow"]:
            raise StrategyError(
                f"parameter {self.strategy_id}.fast: must be < slow ({self.p['slow']}), got {self.p['fast']}"
            )
        self.reset()

    def warmup(self) -> int:
        return int(self.p["slow"]) + 1

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"]
        f = sma(close, self.p["fast"]).to_numpy(dtype=float)
        s = sma(close, self.p["slow"]).to_numpy(dtype=float)
        return signal_frame(bars.index, crossover_targets(f, s), sma_fast=f, sma_slow=s)

    def reset(self) -> None:
        super().reset()
        self._f = PandasRollingMean(self.p["fast"])
        self._s = PandasRollingMean(self.p["slow"])
        self._pf = math.nan
        self._ps = math.nan

    def on_bar(self, bar: Bar) -> float:
        f = self._f.update(bar.close)
        s = self._s.update(bar.close)
        pf, ps = self._pf, self._ps
        self._pf, self._ps = f, s
        if pf < ps and f > s:
            return 1.0
        if pf > ps and f < s:
            return -1.0
        return math.nan
