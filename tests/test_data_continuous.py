"""Continuous front-month futures bars: the roll schedule, stitching and back adjustment."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from fbterm.data.bars import DataError
from fbterm.data.continuous import continuous_bars
from fbterm.model import Future

DAYS = pd.bdate_range("2025-01-01", "2025-12-31", tz="UTC", name="ts")
SPOT = pd.Series(5000.0 + np.arange(len(DAYS)) * 1.0, index=DAYS)


def fetch_with_contango(calls: list[tuple[str, dt.date, dt.date]]):
    """Each contract trades at spot plus 20 points per quarter to its expiry."""

    def fetch(fut: Future, first: dt.date, last: dt.date) -> pd.DataFrame:
        calls.append((fut.key, first, last))
        assert fut.expiry is not None
        sel = SPOT[(SPOT.index.date >= first) & (SPOT.index.date <= last)]
        premium = 20.0 * ((fut.expiry - dt.date(2025, 1, 1)).days // 90 + 1)
        px = sel + premium
        return pd.DataFrame(
            {"open": px, "high": px + 1, "low": px - 1, "close": px, "volume": 100.0}
        )

    return fetch


def test_back_adjusted_series_has_no_jump_at_the_rolls() -> None:
    calls: list[tuple[str, dt.date, dt.date]] = []
    bars, rolls = continuous_bars(
        "ES", dt.date(2025, 1, 1), dt.date(2025, 12, 31), fetch_with_contango(calls)
    )
    assert [r.new.key for r in rolls] == [
        "ES 20250620 FUT",
        "ES 20250919 FUT",
        "ES 20251219 FUT",
        "ES 20260320 FUT",
    ]
    assert all(r.gap == pytest.approx(20.0) for r in rolls)
    # Every day moves by spot's one point: the contango steps are gone.
    assert np.allclose(np.diff(bars["close"].to_numpy()), 1.0)
    # The latest bars are the traded contract's own prices.
    assert bars["close"].iloc[-1] == pytest.approx(SPOT.iloc[-1] + 20.0 * 5)
    assert len(bars) == len(DAYS) and bars.index.is_unique
    # The new contract is fetched from the old one's last day, to measure the gap there.
    assert calls[1] == ("ES 20250620 FUT", rolls[0].day, calls[1][2])


def test_unadjusted_series_keeps_each_contracts_prices() -> None:
    bars, rolls = continuous_bars(
        "ES", dt.date(2025, 1, 1), dt.date(2025, 6, 30), fetch_with_contango([]), adjust=False
    )
    jumps = np.diff(bars["close"].to_numpy())
    assert sorted(set(np.round(jumps, 6))) == [1.0, 21.0]
    assert bars.index[0].date() == dt.date(2025, 1, 1)
    assert [r.old.key for r in rolls] == ["ES 20250321 FUT", "ES 20250620 FUT"]


def test_adjustment_below_zero_is_refused() -> None:
    def fetch(fut: Future, first: dt.date, last: dt.date) -> pd.DataFrame:
        sel = SPOT[(SPOT.index.date >= first) & (SPOT.index.date <= last)]
        assert fut.expiry is not None
        # March rallies from 10 to 60; June trades at 5: the gap of -55 pushes January below 0.
        px = (sel - 4990.0) if fut.expiry.month == 3 else sel * 0 + 5.0
        return pd.DataFrame({"open": px, "high": px, "low": px, "close": px, "volume": 1.0})

    with pytest.raises(DataError, match="adjust=False"):
        continuous_bars("ES", dt.date(2025, 1, 1), dt.date(2025, 6, 30), fetch)
