"""A continuous futures series: front-month bars stitched at each roll, back-adjusted.

Which contract is held when comes from the model's roll schedule
(:func:`fbterm.model.instruments.future.roll_schedule`: the nearest contract until
``roll_days`` business days before its last trade day). Back adjustment shifts every bar before
a roll by the price gap between the two contracts on the last day the old one is held, so the
series has no artificial jump at a roll and the latest prices are the traded contract's own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from fbterm.data.bars import PRICE_COLUMNS, DataError, concat_bars, empty_bars, validate_bars
from fbterm.model import Future
from fbterm.model.instruments.future import roll_schedule

# Bars of one contract between two days (inclusive), in the one bar shape.
ContractBars = Callable[[Future, dt.date, dt.date], pd.DataFrame]


@dataclass(frozen=True, slots=True)
class Roll:
    """One roll: from ``old`` to ``new`` after ``day``, and the gap added to earlier bars."""

    day: dt.date
    old: Future
    new: Future
    gap: float


def _days(df: pd.DataFrame) -> pd.Index:
    days: pd.Index = pd.Index([t.date() for t in df.index], dtype=object)
    return days


def continuous_bars(
    root: str,
    start: dt.date,
    end: dt.date,
    fetch: ContractBars,
    *,
    roll_days: int = 5,
    adjust: bool = True,
) -> tuple[pd.DataFrame, list[Roll]]:
    """Front-month bars of ``root`` over ``[start, end]`` and the rolls made on the way.

    ``fetch(contract, first, last)`` supplies each contract's bars; the next contract is also
    fetched on the old one's last day, to measure the gap there (0 when it has no bar that day).
    """
    segments: list[pd.DataFrame] = []
    rolls: list[Roll] = []
    sched = roll_schedule(root, start, end, roll_days)
    prev: tuple[Future, dt.date, pd.DataFrame] | None = None
    for fut, first, last in sched:
        lo = prev[1] if prev is not None else first
        bars = validate_bars(fetch(fut, lo, last), f"{fut.key} bars")
        days = _days(bars)
        if prev is not None:
            old, old_last, old_bars = prev
            gap = 0.0
            old_days = _days(old_bars)
            if len(old_bars) and (days == old_last).any() and (old_days == old_last).any():
                new_close = float(bars["close"][days == old_last].iloc[-1])
                gap = new_close - float(old_bars["close"][old_days == old_last].iloc[-1])
            rolls.append(Roll(old_last, old, fut, gap))
        held = bars[(days >= first) & (days <= last)]
        segments.append(held)
        prev = (fut, last, held)
    if not segments:
        return empty_bars(), rolls
    if adjust:
        # Shift everything before each roll by that roll's gap (and all later ones).
        shift = 0.0
        for i in range(len(segments) - 1, 0, -1):
            shift += rolls[i - 1].gap
            seg = segments[i - 1].copy()
            seg.loc[:, list(PRICE_COLUMNS)] = seg[list(PRICE_COLUMNS)] + shift
            if (seg[list(PRICE_COLUMNS)] <= 0).to_numpy().any():
                raise DataError(
                    f"continuous {root}",
                    f"back adjustment of {shift:+g} takes prices before {rolls[i - 1].day} "
                    "to zero or below; use adjust=False",
                )
            segments[i - 1] = seg
    return concat_bars(segments), rolls
