"""What a backtest produced, and how it is built from the book once the bars have run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from fbterm.backtest.book import Book
from fbterm.backtest.trades import one_category, trades_from_fills
from fbterm.backtest.venue import BarVenue
from fbterm.model import Option
from fbterm.strategies.base import StrategyInterface


@dataclass
class BacktestResult:
    """What a backtest produced. ``metrics`` is filled by calculate_performance_metrics."""

    equity: pd.Series
    trades: pd.DataFrame
    fills: pd.DataFrame
    bars: pd.DataFrame
    metrics: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    signals: pd.DataFrame | None = None
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)
    position: pd.Series | None = None  # underlying quantity held after each bar
    strategy: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    mode: str = "fast"
    cash: float = 0.0
    warmup_bar: int = 0  # first bar whose indicators are all defined (buy & hold starts here)
    elapsed: float = 0.0


def build_result(
    venue: BarVenue,
    book: Book,
    bars: pd.DataFrame,
    strategy: StrategyInterface,
    signals: pd.DataFrame | None,
    mode: str,
    cash0: float,
    clock_tz: str | None = None,
) -> BacktestResult:
    """The equity curve, positions, fills and trades of a finished run, built with numpy
    from the fill log (1M bars can mean 100k fills: no Python work per bar or fill)."""
    idx = bars.index
    n = len(idx)
    fb = np.asarray(book.fb, dtype=np.int64)
    fq = np.asarray(book.fq, dtype=float)
    fp = np.asarray(book.fp, dtype=float)
    fc = np.asarray(book.fc, dtype=float)
    sym = venue.symbol
    m = len(fb)
    keys: Any
    sym_inst = book.insts.get(sym)
    sym_mult = float(sym_inst.multiplier) if sym_inst is not None else 1.0
    if book.plain or set(book.fk) <= {sym}:
        keys = one_category(m, sym)
        mults = np.full(m, sym_mult)
        is_sym = np.ones(m, dtype=bool)
    else:
        keys = np.asarray(book.fk, dtype=object)
        mults = np.array([book.insts[k].multiplier for k in book.fk], dtype=float)
        is_sym = keys == sym
    reasons = one_category(m, "") if book.plain else pd.Categorical(book.fr)
    flows = np.bincount(fb, weights=fq * fp * mults + fc, minlength=n) if m else np.zeros(n)
    cash = cash0 - np.cumsum(flows)
    position = (
        np.cumsum(np.bincount(fb[is_sym], weights=fq[is_sym], minlength=n))
        if len(fb)
        else np.zeros(n)
    )
    position[np.abs(position) < 1e-9] = 0.0
    close = venue.c
    equity = cash + position * close * sym_mult
    for key in (set(book.insts) - {sym}) if not book.plain else ():
        # Besides the symbol only options are held (the strategies that trade them run here).
        inst = cast(Option, book.insts[key])
        sel = keys == key
        held = np.cumsum(np.bincount(fb[sel], weights=fq[sel], minlength=n))
        for i in np.flatnonzero(np.abs(held) > 1e-9):
            equity[i] += (
                held[i] * inst.multiplier * venue.options.price(inst, close[i], venue.ts[i], int(i))
            )
    if book.wiped_out is not None:
        # Closed out: the deficit is written off and the account stays at 0 (backtesting.py).
        equity[book.wiped_out :] = 0.0
    fills = pd.DataFrame(
        {
            "bar": fb,
            "time": idx[fb] if len(fb) else pd.Index([], dtype=idx.dtype),
            "instrument": keys,
            "quantity": fq,
            "price": fp,
            "commission": fc,
            "reason": reasons,
        }
    )
    trades = trades_from_fills(
        fills, idx, {k: i.multiplier for k, i in book.insts.items()}, clock_tz
    )
    sig = signals
    if sig is None:
        sig = strategy.analyze(bars.iloc[: min(n, max(strategy.warmup() * 3, 64))])
    warm = first_defined(sig)
    rejected = pd.DataFrame(venue.rejected, columns=["ts", "instrument", "reason"])
    return BacktestResult(
        equity=pd.Series(equity, index=idx, name="equity"),
        trades=trades,
        fills=fills,
        bars=bars,
        signals=signals,
        rejected=rejected,
        position=pd.Series(position, index=idx, name="position"),
        strategy=strategy.name or type(strategy).__name__,
        params=dict(strategy.p),
        mode=mode,
        cash=cash0,
        warmup_bar=warm,
    )


def first_defined(signals: pd.DataFrame) -> int:
    """First bar where every indicator column of ``signals`` is defined (0 if none are)."""
    cols = [c for c in signals.columns if c != "target"]
    if not cols:
        return 0
    defined = np.ones(len(signals), dtype=bool)
    for col in cols:
        defined &= ~np.isnan(signals[col].to_numpy(dtype=float))
    return int(np.argmax(defined)) if defined.any() else 0
