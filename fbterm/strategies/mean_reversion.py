"""Mean reversion on Bollinger bands.

z = (close - mean(window)) / std(window) (population std), each window summed left to right
so that the streaming form agrees with the vectorised one bit for bit (prices on a tick grid
often sit exactly on the mean, and z = 0 must not come out as +-1e-17 in one path only). Long when z < -entry_z, short when
z > entry_z; a long is closed once z rises above -exit_z, a short once z falls below exit_z.
Targets: +1/-1 on entries, 0 on exits, NaN otherwise.
"""

from __future__ import annotations

import math
from collections import deque
from typing import ClassVar

import numpy as np
import pandas as pd

from fbterm.model import Bar
from fbterm.strategies._streaming import window_mean_std, window_stats
from fbterm.strategies.base import Param, StrategyError, StrategyInterface, signal_frame


def band_targets(z: np.ndarray, entry_z: float, exit_z: float) -> np.ndarray:
    """Entry/exit targets from z-scores (pure, vectorised). Exits apply only to the side of
    the latest entry; a repeated target is harmless (execute ignores repeats)."""
    with np.errstate(invalid="ignore"):
        long_in = z < -entry_z
        short_in = z > entry_z
        long_out = z > -exit_z
        short_out = z < exit_z
    entries = np.where(long_in, 1.0, np.where(short_in, -1.0, np.nan))
    last = pd.Series(entries).ffill().shift(1).to_numpy()
    exits = (long_out & (last == 1.0)) | (short_out & (last == -1.0))
    return np.where(np.isnan(entries) & exits, 0.0, entries)


class MeanReversion(StrategyInterface):
    name: ClassVar[str] = "mean_reversion"
    description: ClassVar[str] = "Fade moves outside the Bollinger bands; exit near the mean."
    params: ClassVar[tuple[Param, ...]] = (
        Param("window", int, 20, "SMA/std window (bars)", min=2),
        Param("entry_z", float, 2.0, "enter beyond this many standard deviations", min=0.0),
        Param("exit_z", float, 0.0, "exit once back inside this band", min=0.0),
    )

    def check(self) -> None:
        if self.p["exit_z"] >= self.p["entry_z"]:
            raise StrategyError(
                f"parameter {self.strategy_id}.exit_z: must be < entry_z ({self.p['entry_z']:g}), got {self.p['exit_z']:g}"
            )
        self.reset()

    def warmup(self) -> int:
        return int(self.p["window"])

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        c = bars["close"].to_numpy(dtype=float)
        n = self.p["window"]
        mid, sd = window_mean_std(c, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(sd > 0, (c - mid) / sd, 0.0)
        z[np.isnan(mid)] = np.nan
        target = band_targets(z, self.p["entry_z"], self.p["exit_z"])
        return signal_frame(
            bars.index,
            target,
            mid=mid,
            upper=mid + self.p["entry_z"] * sd,
            lower=mid - self.p["entry_z"] * sd,
            z=z,
        )

    def reset(self) -> None:
        super().reset()
        self._win: deque[float] = deque(maxlen=self.p["window"])
        self._last_entry = math.nan

    def on_bar(self, bar: Bar) -> float:
        self._win.append(bar.close)
        if len(self._win) < self.p["window"]:
            return math.nan
        m, sd = window_stats(self._win, self.p["window"])
        z = (bar.close - m) / sd if sd > 0 else 0.0
        ez, xz = self.p["entry_z"], self.p["exit_z"]
        last = self._last_entry
        if z < -ez:
            self._last_entry = 1.0
            return 1.0
        if z > ez:
            self._last_entry = -1.0
            return -1.0
        if (last == 1.0 and z > -xz) or (last == -1.0 and z < xz):
            return 0.0
        return math.nan
