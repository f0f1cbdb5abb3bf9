"""The fill model and commission models, as pure functions.

The paper broker and the backtester both call :func:`match_order`, so a strategy fills the same
way in a backtest as in paper trading. It decides from one market update (a bar, or a tick seen
as a one-price bar with a bid and an ask) whether and where an order fills:

* market: at the update's open (the next price after the order was placed); a buy pays the ask
  and a sell gets the bid when the update has them;
* limit: when the price reaches the limit; at the open when it opens through the limit (price
  improvement), otherwise at the limit;
* stop: triggered when the price touches the stop; fills at the stop, or at the open when it
  gaps through;
* stop-limit: once triggered it is a limit order (possibly in the same update).

Partial fills cap a fill at ``participation`` of the update's volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fbterm.model import Bar, Order, OrderType, Side, Tick


@dataclass(frozen=True, slots=True)
class MarketUpdate:
    """What the fill model needs from one bar or tick."""

    ts: float
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    bid: float | None = None
    ask: float | None = None

    @classmethod
    def from_tick(cls, t: Tick) -> MarketUpdate:
        return cls(t.ts, t.last, t.last, t.last, t.last, t.volume, t.bid, t.ask)

    @classmethod
    def from_bar(cls, b: Bar) -> MarketUpdate:
        return cls(b.ts, b.open, b.high, b.low, b.close, b.volume)


@dataclass(frozen=True, slots=True)
class FillDecision:
    quantity: float  # 0 when only the stop was triggered
    price: float
    triggered: bool  # the stop has been touched (now or earlier)


def _buy_px(u: MarketUpdate) -> float:
    return u.ask if u.ask is not None and u.ask > 0 else u.open


def _sell_px(u: MarketUpdate) -> float:
    return u.bid if u.bid is not None and u.bid > 0 else u.open


def _cap(quantity: float, u: MarketUpdate, participation: float | None, whole: bool) -> float:
    if participation is None or participation <= 0 or u.volume <= 0:
        return quantity
    cap = u.volume * participation
    if whole:
        cap = math.floor(cap)
    return max(min(quantity, cap), 0.0)


def match_order(
    order: Order,
    u: MarketUpdate,
    *,
    participation: float | None = None,
    whole_units: bool = True,
) -> FillDecision | None:
    """Whether ``order`` fills against update ``u``, and how much at what price.

    Returns None when nothing happens. ``participation`` caps the fill at that share of the
    update's volume (None: no cap; an update without volume is never capped).
    """
    qty = order.remaining
    if qty <= 0:
        return None
    buy = order.side is Side.BUY
    typ = order.order_type
    triggered = order.triggered
    lo = min(u.low, u.ask) if (buy and u.ask) else u.low
    hi = max(u.high, u.bid) if (not buy and u.bid) else u.high
    ref_open = _buy_px(u) if buy else _sell_px(u)

    if typ is OrderType.MARKET:
        price = ref_open
    elif typ is OrderType.LIMIT:
        price = _limit_price(buy, order.limit_price, ref_open, lo, hi)  # type: ignore[arg-type]
        if price is None:
            return None
    else:
        stop = order.stop_price
        assert stop is not None
        if not triggered:
            # A bar has no bid/ask: only a quote that exists can touch the stop.
            if buy:
                touched = u.high >= stop or (u.ask is not None and u.ask >= stop)
            else:
                touched = u.low <= stop or (u.bid is not None and 0 < u.bid <= stop)
            if not touched:
                return None
            triggered = True
            gapped = ref_open >= stop if buy else ref_open <= stop
            trigger_px = ref_open if gapped else stop
        else:
            trigger_px = ref_open
        if typ is OrderType.STOP:
            price = trigger_px
        else:
            limit = order.limit_price
            assert limit is not None
            # After the trigger the order is a limit order for the rest of the update.
            start = trigger_px
            if buy:
                price = start if start <= limit else (limit if lo <= limit else None)
            else:
                price = start if start >= limit else (limit if hi >= limit else None)
            if price is None:
                return FillDecision(0.0, 0.0, True)
    fill_qty = _cap(qty, u, participation, whole_units)
    if fill_qty <= 0:
        return FillDecision(0.0, 0.0, triggered) if triggered != order.triggered else None
    return FillDecision(fill_qty, float(price), triggered)


def _limit_price(buy: bool, limit: float, open_px: float, lo: float, hi: float) -> float | None:
    if buy:
        if open_px <= limit:
            return open_px
        return limit if lo <= limit else None
    if open_px >= limit:
        return open_px
    return limit if hi >= limit else None


# ------------------------------------------------------------------------------ commissions


@dataclass(frozen=True, slots=True)
class PerShareCommission:
    """IB's fixed pricing: a rate per share (per contract for options), a minimum per order,
    and a cap as a fraction of the trade value."""

    per_share: float = 0.005
    minimum: float = 1.0
    max_fraction: float = 0.01
    per_contract: float = 0.65  # options

    def __call__(self, quantity: float, price: float, multiplier: int = 1) -> float:
        if quantity <= 0:
            return 0.0
        if multiplier > 1:
            return max(self.per_contract * quantity, self.minimum)
        fee = max(self.per_share * quantity, self.minimum)
        cap = self.max_fraction * quantity * price
        return min(fee, cap) if cap > 0 else fee


@dataclass(frozen=True, slots=True)
class FractionCommission:
    """A fraction of the traded value (backtesting.py's ``commission=0.002``)."""

    fraction: float = 0.0

    def __call__(self, quantity: float, price: float, multiplier: int = 1) -> float:
        return abs(quantity) * price * multiplier * self.fraction


CommissionModel = PerShareCommission | FractionCommission


def commission_model(kind: str, **kw: float) -> CommissionModel:
    if kind in ("per_share", "ib", "fixed"):
        return PerShareCommission(**kw)
    if kind in ("percent", "fraction"):
        return FractionCommission(**kw)
    raise ValueError(f"unknown commission model {kind!r}: expected 'per_share' or 'percent'")
