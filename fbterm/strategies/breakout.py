"""Donchian channel breakout with ATR-based position sizing.

Long when the close breaks above the highest high of the previous ``window`` bars, short when
it breaks below the lowest low; a long is closed when the close falls below the lowest low of
the previous ``exit_window`` bars (a short, above the highest high). ``execute`` sizes each
entry so that a move of ``atr_mult`` ATRs against it costs ``risk_pct`` % of equity (the turtle
rule), capped by the strategy's sizing mode.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pandas as pd

from fbterm.model import Bar, Signal
from fbterm.strategies._streaming import PandasRollingMean, RollingExtreme, sma, true_range
from fbterm.strategies.base import (
    Param,
    StrategyContext,
    StrategyError,
    StrategyInterface,
    _latest_target,
    signal_frame,
    target_quantity,
)


def atr_quantity(
    target: float, price: float, equity: float, atr: float, risk_pct: float, atr_mult: float
) -> float:
    """Whole units such that ``atr_mult`` ATRs of adverse move lose ``risk_pct`` % of equity."""
    if not target or not (atr > 0) or equity <= 0 or price <= 0:
        return 0.0
    units = equity * risk_pct / 100.0 * abs(target) / (atr_mult * atr)
    return math.copysign(float(math.floor(units + 1e-9)), target)


def breakout_targets(
    close: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    exit_upper: np.ndarray,
    exit_lower: np.ndarray,
) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        entries = np.where(close > upper, 1.0, np.where(close < lower, -1.0, np.nan))
        last = pd.Series(entries).ffill().shift(1).to_numpy()
        exits = ((last == 1.0) & (close < exit_lower)) | ((last == -1.0) & (close > exit_upper))
    return np.where(np.isnan(entries) & exits, 0.0, entries)


class Breakout(StrategyInterface):
    name: ClassVar[str] = "breakout"
    description: ClassVar[str] = "Donchian channel breakout, sized by ATR risk."
    params: ClassVar[tuple[Param, ...]] = (
        Param("window", int, 20, "entry channel (bars)", min=2),
        Param("exit_window", int, 10, "exit channel (bars)", min=1),
        Param("atr_window", int, 14, "ATR window (bars)", min=1),
        Param("risk_pct", float, 1.0, "equity % risked per entry", min=0.01, max=100.0),
        Param("atr_mult", float, 2.0, "stop distance in ATRs used for sizing", min=0.1),
    )

    def check(self) -> None:
        if self.p["exit_window"] > self.p["window"]:
            raise StrategyError(
                f"parameter {self.strategy_id}.exit_window: must be <= window ({self.p['window']}), got {self.p['exit_window']}"
            )
        self.reset()

    def warmup(self) -> int:
        return int(max(self.p["window"], self.p["atr_window"])) + 1

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        n, m = self.p["window"], self.p["exit_window"]
        high, low = bars["high"], bars["low"]
        close = bars["close"].to_numpy(dtype=float)
        upper = high.rolling(n).max().shift(1).to_numpy(dtype=float)
        lower = low.rolling(n).min().shift(1).to_numpy(dtype=float)
        xu = high.rolling(m).max().shift(1).to_numpy(dtype=float)
        xl = low.rolling(m).min().shift(1).to_numpy(dtype=float)
        tr = true_range(high.to_numpy(dtype=float), low.to_numpy(dtype=float), close)
        atr = sma(pd.Series(tr, index=bars.index), self.p["atr_window"]).to_numpy(dtype=float)
        target = breakout_targets(close, upper, lower, xu, xl)
        # No entry before the ATR exists: execute could not size it.
        target[np.isnan(atr)] = np.nan
        return signal_frame(
            bars.index, target, upper=upper, lower=lower, exit_upper=xu, exit_lower=xl, atr=atr
        )

    def reset(self) -> None:
        super().reset()
        n, m = self.p["window"], self.p["exit_window"]
        self._hi, self._lo = RollingExtreme(n), RollingExtreme(n, is_max=False)
        self._xhi, self._xlo = RollingExtreme(m), RollingExtreme(m, is_max=False)
        self._atr_m = PandasRollingMean(self.p["atr_window"])
        self._prev = (math.nan, math.nan, math.nan, math.nan)
        self._prev_close = math.nan
        self._atr = math.nan
        self._last_entry = math.nan

    def on_bar(self, bar: Bar) -> float:
        upper, lower, xu, xl = self._prev  # channels of the previous bars, excluding this one
        self._prev = (
            self._hi.update(bar.high),
            self._lo.update(bar.low),
            self._xhi.update(bar.high),
            self._xlo.update(bar.low),
        )
        pc = self._prev_close
        tr = (
            bar.high - bar.low
            if math.isnan(pc)
            else max(bar.high - bar.low, abs(bar.high - pc), abs(bar.low - pc))
        )
        self._prev_close = bar.close
        self._atr = self._atr_m.update(tr)
        c, last = bar.close, self._last_entry
        if c > upper:
            t = 1.0
        elif c < lower:
            t = -1.0
        elif (last == 1.0 and c < xl) or (last == -1.0 and c > xu):
            t = 0.0
        else:
            return math.nan
        if t:
            self._last_entry = t
        return math.nan if math.isnan(self._atr) else t

    def execute(self, signals: pd.DataFrame | float, ctx: StrategyContext) -> list[Signal]:
        target = _latest_target(signals)
        if math.isnan(target):
            return []
        if self._last_target.get(ctx.symbol) == target:
            return []
        self._last_target[ctx.symbol] = target
        atr = float(signals["atr"].iloc[-1]) if isinstance(signals, pd.DataFrame) else self._atr
        qty = atr_quantity(
            target, ctx.price, ctx.equity, atr, self.p["risk_pct"], self.p["atr_mult"]
        )
        cap = target_quantity(
            target,
            ctx.price,
            ctx.equity,
            ctx.sizing,
            commission_fraction=ctx.commission_fraction,
            position=ctx.position,
        )
        if abs(cap) < abs(qty):
            qty = cap
        return self.orders_to(qty, ctx, reason=f"breakout {target:+g}, ATR {atr:.4g}")
