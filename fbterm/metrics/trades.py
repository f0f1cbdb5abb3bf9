"""Round-trip trades: FIFO matching of fills into closed trades, with excursions and slippage.

Pure functions and one small incremental matcher, shared by the live metrics (trades closed so
far) and post-trade reports. Money amounts include the instrument multiplier; slippage is
positive when it cost us (bought above / sold below the price the strategy saw); MAE <= 0 <= MFE.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fbterm.model import Fill, Order

# Quantities below this are float dust from splitting lots, not a position.
QTY_EPS = 1e-9

PricePath = Sequence[tuple[float, float]]  # (ts, price), sorted by ts


def excursions(entry_price: float, direction: int, path: Iterable[float]) -> tuple[float, float]:
    """(MAE, MFE) per unit for a position entered at ``entry_price``: MAE <= 0 <= MFE."""
    mae = mfe = 0.0
    for p in path:
        move = (p - entry_price) * direction
        mae = min(mae, move)
        mfe = max(mfe, move)
    return mae, mfe


def path_between(path: PricePath | None, t0: float, t1: float) -> list[float]:
    if not path:
        return []
    return [p for t, p in path if t0 <= t <= t1]


def price_path_from_bars(bars: Any) -> list[tuple[float, float]]:
    """A price path from a bar DataFrame (UTC DatetimeIndex; open/high/low/close).

    Each bar contributes its low and high, so excursions see the intrabar extremes. Both are
    stamped with the bar's open time, which can credit an excursion that happened in the bar
    before the entry fill; that is the usual, accepted bias of bar-based MAE/MFE.
    """
    out: list[tuple[float, float]] = []
    for ts, low, high in zip(bars.index, bars["low"], bars["high"], strict=True):
        t = ts.timestamp()
        out.append((t, float(low)))
        out.append((t, float(high)))
    return out


# ========================================================== pure maths: round-trip trades


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    """One matched (entry lot, exit fill) pair: FIFO per strategy and instrument."""

    trade_id: str
    strategy_id: str
    instrument: str
    direction: int  # +1 long, -1 short
    quantity: float
    entry_ts: float
    exit_ts: float
    entry_price: float
    exit_price: float
    multiplier: int
    commissions: float
    gross_pnl: float
    pnl: float  # net of commissions
    return_pct: float  # pnl / entry notional
    holding_seconds: float
    mae: float  # money, <= 0
    mfe: float  # money, >= 0
    slippage: float  # money, > 0 is a cost
    entry_fill_id: str
    exit_fill_id: str

    @property
    def is_win(self) -> bool:
        return self.pnl > 0


@dataclass
class _Lot:
    fill: Fill
    remaining: float
    commission_left: float
    slippage_left: float


def fill_slippage(fill: Fill, signal_price: float | None) -> float:
    """Money lost against the price the strategy saw (negative: price improvement)."""
    if signal_price is None or not math.isfinite(signal_price) or signal_price <= 0:
        return 0.0
    return (fill.price - signal_price) * fill.side.sign * fill.quantity * fill.instrument.multiplier


class FifoMatcher:
    """Incremental FIFO matching: feed fills in time order, collect closed trades as they close."""

    def __init__(self, price_paths: Mapping[str, PricePath] | None = None) -> None:
        self.price_paths = price_paths or {}
        self.books: dict[tuple[str, str], deque[_Lot]] = {}
        self.trades: list[ClosedTrade] = []

    def add(self, f: Fill, signal_price: float | None = None) -> list[ClosedTrade]:
        if f.quantity <= 0:
            return []
        book = self.books.setdefault((f.strategy_id, f.instrument.key), deque())
        slip = fill_slippage(f, signal_price)
        qty_left = f.quantity
        sign = f.side.sign
        closed: list[ClosedTrade] = []
        while qty_left > QTY_EPS and book and book[0].fill.side.sign != sign:
            lot = book[0]
            q = min(lot.remaining, qty_left)
            share_entry = q / lot.remaining
            share_exit = q / f.quantity
            entry_comm = lot.commission_left * share_entry
            entry_slip = lot.slippage_left * share_entry
            closed.append(
                _closed_trade(
                    lot.fill,
                    f,
                    q,
                    entry_comm + f.commission * share_exit,
                    entry_slip + slip * share_exit,
                    self.price_paths.get(f.instrument.key),
                )
            )
            lot.remaining -= q
            lot.commission_left -= entry_comm
            lot.slippage_left -= entry_slip
            qty_left -= q
            if lot.remaining <= QTY_EPS:
                book.popleft()
        if qty_left > QTY_EPS:
            share = qty_left / f.quantity
            book.append(_Lot(f, qty_left, f.commission * share, slip * share))
        self.trades.extend(closed)
        return closed


def match_round_trips(
    fills: Iterable[Fill],
    *,
    signal_prices: Mapping[str, float | None] | None = None,
    price_paths: Mapping[str, PricePath] | None = None,
) -> list[ClosedTrade]:
    """Match fills FIFO per (strategy, instrument) into closed trades.

    Each opening fill becomes a lot; a closing fill consumes the oldest lots first and yields one
    ClosedTrade per lot (part) it closes. A fill that reverses the position closes what is open
    and opens a new lot with the remainder. Commission and slippage are shared out by quantity.
    ``signal_prices`` maps client_order_id to the order's signal price; ``price_paths`` maps an
    instrument key to its (ts, price) path for MAE/MFE (without one, excursions come from the
    entry and exit prices alone).
    """
    signal_prices = signal_prices or {}
    m = FifoMatcher(price_paths)
    for f in sorted(fills, key=lambda x: x.ts):
        m.add(f, signal_prices.get(f.client_order_id))
    return m.trades


def _closed_trade(
    entry: Fill,
    exit_: Fill,
    qty: float,
    commissions: float,
    slippage: float,
    path: PricePath | None,
) -> ClosedTrade:
    direction = entry.side.sign
    mult = entry.instrument.multiplier
    gross = (exit_.price - entry.price) * direction * qty * mult
    pnl = gross - commissions
    notional = entry.price * qty * mult
    prices = [entry.price, *path_between(path, entry.ts, exit_.ts), exit_.price]
    mae, mfe = excursions(entry.price, direction, prices)
    return ClosedTrade(
        trade_id=f"{entry.fill_id}>{exit_.fill_id}",
        strategy_id=entry.strategy_id,
        instrument=entry.instrument.key,
        direction=direction,
        quantity=float(qty),
        entry_ts=float(entry.ts),
        exit_ts=float(exit_.ts),
        entry_price=float(entry.price),
        exit_price=float(exit_.price),
        multiplier=mult,
        commissions=float(commissions),
        gross_pnl=float(gross),
        pnl=float(pnl),
        return_pct=float(pnl / notional) if notional else 0.0,
        holding_seconds=max(0.0, float(exit_.ts - entry.ts)),
        mae=float(mae * qty * mult),
        mfe=float(mfe * qty * mult),
        slippage=float(slippage),
        entry_fill_id=entry.fill_id,
        exit_fill_id=exit_.fill_id,
    )


def fill_rate(orders: Iterable[Order]) -> float:
    """Filled quantity over ordered quantity, for orders that are done (still-working orders
    would bias it low). Rejected and cancelled orders count with what they filled. NaN if none."""
    asked = filled = 0.0
    for o in orders:
        if o.status.is_terminal:
            asked += o.quantity
            filled += o.filled_quantity
    return filled / asked if asked > 0 else math.nan


__all__ = [
    "QTY_EPS",
    "ClosedTrade",
    "FifoMatcher",
    "PricePath",
    "excursions",
    "fill_rate",
    "fill_slippage",
    "match_round_trips",
    "path_between",
    "price_path_from_bars",
]
