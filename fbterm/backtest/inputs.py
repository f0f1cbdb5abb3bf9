"""What a backtest is given, checked and turned into what it runs on: bars, commission, sizing.

Every problem is a :class:`BacktestError` whose message is one line naming the input.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fbterm.execution.costs import (
    PER_SHARE_NAMES,
    CommissionModel,
    FractionCommission,
    PerShareCommission,
)
from fbterm.strategies.base import Sizing, StrategyError

REQUIRED_COLUMNS = ("open", "high", "low", "close")

FloatArray = np.ndarray[tuple[int], np.dtype[np.float64]]


class BacktestError(ValueError):
    """A backtest cannot run or failed; the message is one line naming the cause."""


def make_commission(commission: float | str | CommissionModel | None) -> CommissionModel:
    """A commission model from a fraction (0.002), 'ib'/'per_share', or a model."""
    if commission is None:
        return FractionCommission(0.0)
    if isinstance(commission, FractionCommission | PerShareCommission):
        return commission
    if isinstance(commission, str):
        text = commission.strip().lower()
        if text in PER_SHARE_NAMES:
            return PerShareCommission()
        try:
            commission = float(text)
        except ValueError:
            raise BacktestError(
                f"commission: expected a fraction like 0.002 or 'ib', got {commission!r}"
            ) from None
    c = float(commission)
    if not (0.0 <= c < 0.1) or not math.isfinite(c):
        raise BacktestError(f"commission: a fraction in [0, 0.1) expected, got {c:g}")
    return FractionCommission(c)


def make_sizing(sizing: Sizing | str | None, value: float | None = None) -> Sizing:
    """A :class:`Sizing` from a mode name (and value; each mode has a default), or as given."""
    if isinstance(sizing, Sizing):
        return sizing
    mode = sizing or "all_in"
    if value is None:
        value = {"fixed": 100.0, "cash": 10_000.0}.get(mode, 1.0)
    try:
        return Sizing(mode, float(value))
    except StrategyError as e:
        raise BacktestError(str(e)) from None


def prepare_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """The bar frame as float columns on a sorted index; or a BacktestError.

    Deliberately more lenient than :func:`fbterm.data.bars.validate_bars`, the one bar shape
    of stored data: a backtest also takes frames built by hand or by research code, so any
    index (a plain range counts as days), any column case and a missing volume are accepted,
    and unsorted rows are sorted rather than refused. Only what would make the simulation
    meaningless is an error: missing prices, or prices that are not finite and positive.
    """
    if not isinstance(bars, pd.DataFrame) or bars.empty:
        raise BacktestError("no bars to backtest")
    cols = {c.lower(): c for c in bars.columns}
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise BacktestError(f"bars lack column(s) {', '.join(missing)}")
    out = pd.DataFrame(
        {c: bars[cols[c]].to_numpy(dtype=float) for c in REQUIRED_COLUMNS}, index=bars.index
    )
    out["volume"] = bars[cols["volume"]].to_numpy(dtype=float) if "volume" in cols else 0.0
    if not out.index.is_monotonic_increasing:
        out = out.sort_index(kind="stable")
    px = out[list(REQUIRED_COLUMNS)].to_numpy()
    if not np.isfinite(px).all() or (px <= 0).any():
        bad = int(np.flatnonzero(~(np.isfinite(px) & (px > 0)).all(axis=1))[0])
        raise BacktestError(f"bar {out.index[bad]}: prices must be finite and > 0")
    return out


def bar_seconds(index: pd.Index) -> FloatArray:
    """Each bar's time as epoch seconds; an index without times counts one day per bar."""
    if isinstance(index, pd.DatetimeIndex):
        return np.asarray(index.as_unit("ns").asi8 / 1e9, dtype=np.float64)
    return np.arange(len(index), dtype=np.float64) * 86400.0
