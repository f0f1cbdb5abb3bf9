"""Closed trades from a fill log: round trips, their P&L and return, as backtesting.py counts them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd


def one_category(m: int, name: str) -> pd.Categorical[str]:
    """``m`` copies of ``name`` as a categorical, without a Python object per row."""
    return pd.Categorical.from_codes(np.zeros(m, dtype=np.int8), categories=pd.Index([name]))


TRADE_COLUMNS = [
    "instrument",
    "size",
    "entry_bar",
    "exit_bar",
    "entry_time",
    "exit_time",
    "entry_price",
    "exit_price",
    "pnl",
    "return_pct",
    "commission",
    "duration",
]


def trades_from_fills(
    fills: pd.DataFrame,
    index: pd.Index,
    multipliers: dict[str, int],
    clock_tz: str | None = None,
) -> pd.DataFrame:
    """Closed round trips from fills: a trade opens when a position leaves zero (or reverses)
    and closes when it returns to zero or reverses; a partial reduction closes that part.
    Commission of a fill that both closes and opens is split by quantity. return_pct follows
    backtesting.py: the price move in % of entry, less the trade's commissions in % of entry
    value. A position still open at the end is not a trade. ``duration`` is measured on the
    wall clock of ``clock_tz`` (a Friday-to-Monday trade across a daylight saving change is 3
    days, not 2 days 23 hours)."""
    parts: list[pd.DataFrame] = []
    if len(fills):
        for key, grp in fills.groupby("instrument", sort=False, observed=True):
            mult = float(multipliers.get(str(key), 1))
            q = grp["quantity"].to_numpy()
            p1 = np.cumsum(q)
            p1[np.abs(p1) < 1e-9] = 0.0
            p0 = np.r_[0.0, p1[:-1]]
            if simple_round_trips(p0, p1):
                parts.append(_trades_vectorised(str(key), grp, p0, p1, mult))
            else:
                parts.append(pd.DataFrame(_trades_walk(str(key), grp, mult), columns=_RAW_COLUMNS))
    parts = [p for p in parts if len(p)]
    df = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_RAW_COLUMNS)
    if len(df):
        df = df.sort_values(["exit_bar", "entry_bar"], kind="stable").reset_index(drop=True)
        eb = df["entry_bar"].to_numpy(dtype=np.int64)
        xb = df["exit_bar"].to_numpy(dtype=np.int64)
        df["entry_time"] = index[eb]
        df["exit_time"] = index[xb]
    else:
        df["entry_time"] = pd.Series([], dtype=index.dtype)
        df["exit_time"] = pd.Series([], dtype=index.dtype)
    if len(df) and isinstance(index, pd.DatetimeIndex) and index.tz is not None and clock_tz:
        wall = [
            pd.DatetimeIndex(df[c]).tz_convert(clock_tz).tz_localize(None)
            for c in ("exit_time", "entry_time")
        ]
        df["duration"] = wall[0] - wall[1]
    else:
        df["duration"] = (
            df["exit_time"] - df["entry_time"] if len(df) else pd.Series([], dtype=object)
        )
    return df[TRADE_COLUMNS]


_RAW_COLUMNS = TRADE_COLUMNS[:4] + TRADE_COLUMNS[6:11]


def simple_round_trips(p0: np.ndarray, p1: np.ndarray) -> bool:
    """Whether every fill opens from flat, closes to flat or reverses (the vectorised case)."""
    return bool(np.all((p0 == 0) | (p1 == 0) | ((p0 > 0) != (p1 > 0))))


def round_trip_arrays(
    p0: np.ndarray, p1: np.ndarray, q: np.ndarray, px: np.ndarray, com: np.ndarray, mult: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The round trips of fills where :func:`simple_round_trips` holds: (opening fill,
    closing fill, size, pnl, return, commission). ``q`` is each fill's absolute quantity,
    ``p0``/``p1`` the position before/after it. The one place this arithmetic lives: trade
    lists and the sweep engine's metrics both use it."""
    opens = np.flatnonzero(p1 != 0)
    closes = np.flatnonzero(p0 != 0)
    m = min(len(opens), len(closes))
    oi, ci = opens[:m], closes[:m]
    size = p1[oi]
    with np.errstate(invalid="ignore", divide="ignore"):
        c_in = com[oi] * np.abs(p1[oi]) / q[oi]
        c_out = com[ci] * np.abs(p0[ci]) / q[ci]
    entry, exit_ = px[oi], px[ci]
    comm = c_in + c_out
    pnl = size * (exit_ - entry) * mult - comm
    ret = np.sign(size) * (exit_ / entry - 1) - comm / (np.abs(size) * entry * mult)
    return oi, ci, size, pnl, ret, comm


def _trades_vectorised(
    key: str, grp: pd.DataFrame, p0: np.ndarray, p1: np.ndarray, mult: float
) -> pd.DataFrame:
    """Fast case: every fill opens from flat, closes to flat, or reverses."""
    bar = grp["bar"].to_numpy()
    px = grp["price"].to_numpy()
    com = grp["commission"].to_numpy()
    q = np.abs(grp["quantity"].to_numpy())
    oi, ci, size, pnl, ret, comm = round_trip_arrays(p0, p1, q, px, com, mult)
    m = len(oi)
    if m == 0:
        return pd.DataFrame(columns=_RAW_COLUMNS)
    return pd.DataFrame(
        {
            "instrument": one_category(m, key),
            "size": size,
            "entry_bar": bar[oi],
            "exit_bar": bar[ci],
            "entry_price": px[oi],
            "exit_price": px[ci],
            "pnl": pnl,
            "return_pct": ret,
            "commission": comm,
        }
    )


def _trades_walk(key: str, grp: pd.DataFrame, mult: float) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    size = entry = ecomm = 0.0
    ebar = 0
    for b, q, p, c in zip(
        grp["bar"], grp["quantity"], grp["price"], grp["commission"], strict=True
    ):
        rem = q
        if size and (size > 0) != (q > 0):
            closed = min(abs(size), abs(q))
            part_c = c * closed / abs(q)
            share = closed / abs(size)
            tc = ecomm * share + part_c
            sz = math.copysign(closed, size)
            pnl = sz * (p - entry) * mult - tc
            ret = math.copysign(1, sz) * (p / entry - 1) - tc / (closed * entry * mult)
            rows.append((key, sz, ebar, int(b), entry, p, pnl, ret, tc))
            ecomm -= ecomm * share
            size -= sz
            if abs(size) < 1e-9:
                size = 0.0
            rem = q + sz
            c -= part_c
        if abs(rem) > 1e-9:
            if not size:
                entry, ebar, ecomm = p, int(b), c
            else:
                entry = (entry * abs(size) + p * abs(rem)) / (abs(size) + abs(rem))
                ecomm += c
            size += rem
    return rows
