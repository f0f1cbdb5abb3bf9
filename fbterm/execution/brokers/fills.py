"""The fill model, as pure functions.

The paper broker and both backtest paths fill with these rules, so a strategy fills the same
way in a backtest as in paper trading. :func:`match_order` decides from one market update (a
bar, or a tick seen as a one-price bar with a bid and an ask) whether and where an order fills:

* market: at the update's open (the next price after the order was placed); a buy pays the ask
  and a sell gets the bid when the update has them;
* limit: when the price reaches the limit; at the open when it opens through the limit (price
  improvement), otherwise at the limit;
* stop: triggered when the price touches the stop; fills at the stop, or at the open when it
  gaps through;
* stop-limit: once triggered it is a limit order (possibly in the same update);
* trailing stop: a stop whose level follows the market (:func:`trail_level`): it is checked
  against the level it had before the update, then the level ratchets with the update's
  extreme; an order without a level yet only takes one.

Partial fills cap a fill at ``participation`` of the update's volume.

Each rule is also a small function of its own (:func:`market_price`, :func:`stop_touched`,
:func:`stop_price`, :func:`limit_touched`, :func:`limit_fill_price`) so the backtester's fast
path, which never builds an order, applies the same rules; the array forms
(:func:`market_prices`, :func:`stops_touched`, :func:`limits_touched`) sit next to their
scalar twin and a test holds each pair to the same answers.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from fbterm.model import Bar, Order, OrderType, Side, Tick

FloatArray = np.ndarray[tuple[int], np.dtype[np.float64]]
BoolArray = np.ndarray[tuple[int], np.dtype[np.bool_]]


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


# ------------------------------------------------------------------------------ the rules


def market_price(
    buy: bool, open_: float, bid: float | None = None, ask: float | None = None
) -> float:
    """Where a market order fills: the ask for a buy, the bid for a sell, else the open."""
    if buy:
        return ask if ask is not None and ask > 0 else open_
    return bid if bid is not None and bid > 0 else open_


def market_prices(
    open_: FloatArray,
    *,
    buy: BoolArray | None = None,
    bid: FloatArray | None = None,
    ask: FloatArray | None = None,
) -> FloatArray:
    """:func:`market_price` over arrays of updates (NaN: no bid/ask). Without quotes the
    side does not matter, so ``buy`` may be left out."""
    out = np.array(open_, dtype=np.float64)
    if bid is None and ask is None:
        return out
    if buy is None:
        raise ValueError("market_prices: buy is needed when bid or ask is given")
    with np.errstate(invalid="ignore"):
        if ask is not None:
            use = buy & (ask > 0)
            out[use] = ask[use]
        if bid is not None:
            use = ~buy & (bid > 0)
            out[use] = bid[use]
    return out


def stop_touched(
    buy: bool,
    stop: float,
    high: float,
    low: float,
    bid: float | None = None,
    ask: float | None = None,
) -> bool:
    """Whether an update reaches a stop: a buy stop from below, a sell stop from above.

    A bar has no bid/ask: only a quote that exists can touch the stop."""
    if buy:
        return high >= stop or (ask is not None and ask >= stop)
    return low <= stop or (bid is not None and 0 < bid <= stop)


def stops_touched(buy: bool, stop: FloatArray, high: FloatArray, low: FloatArray) -> BoolArray:
    """:func:`stop_touched` over arrays of bars (no quotes); a NaN stop is never touched."""
    with np.errstate(invalid="ignore"):
        return high >= stop if buy else low <= stop


def stop_price(buy: bool, stop: float, ref_open: float) -> float:
    """Where a touched stop fills: at the stop, or at the open when the update opened
    beyond it (a gap gives no chance to fill at the stop)."""
    gapped = ref_open >= stop if buy else ref_open <= stop
    return ref_open if gapped else stop


def limit_touched(buy: bool, limit: float, high: float, low: float) -> bool:
    """Whether an update's range reaches a limit: a buy limit from above, a sell from below."""
    return low <= limit if buy else high >= limit


def limits_touched(buy: bool, limit: FloatArray, high: FloatArray, low: FloatArray) -> BoolArray:
    """:func:`limit_touched` over arrays of bars; a NaN limit is never touched."""
    with np.errstate(invalid="ignore"):
        return low <= limit if buy else high >= limit


def limit_fill_price(
    buy: bool, limit: float, open_: float, low: float, high: float
) -> float | None:
    """Where a limit order fills in an update, or None: at the open when the update opens
    through the limit (price improvement), otherwise at the limit once the range reaches it."""
    if open_ <= limit if buy else open_ >= limit:
        return open_
    return limit if limit_touched(buy, limit, high, low) else None


def trail_level(
    buy: bool,
    level: float | None,
    high: float,
    low: float,
    amount: float | None,
    percent: float | None,
) -> float:
    """A trailing stop's level after an update: a sell stop trails the high by ``amount`` (or
    ``percent``) and never falls; a buy stop trails the low and never rises."""
    if buy:
        cand = low + amount if amount is not None else low * (1 + (percent or 0.0) / 100)
        return cand if level is None else min(level, cand)
    cand = high - amount if amount is not None else high * (1 - (percent or 0.0) / 100)
    return cand if level is None else max(level, cand)


def oca_after_fill(other: Order, filled: float) -> Order | None:
    """An OCA group's other order after ``filled`` units of one of its orders fill: reduced by
    as much, or None (cancelled) when nothing would be left above what it already filled."""
    left = other.quantity - filled
    if left <= other.filled_quantity + 1e-9:
        return None
    return dataclasses.replace(other, quantity=left)


def oca_rank(order: Order) -> int:
    """Matching order within one update: an OCA group's stops first (when one update reaches
    both exits of a bracket the loss is assumed), then other orders, then OCA limits."""
    if not order.oca_group:
        return 1
    return 0 if order.stop_price is not None and order.limit_price is None else 2


# ------------------------------------------------------------------------------ matching


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
    # A quote beyond the bar's range counts for the limit: the buyer could take that ask.
    lo = min(u.low, u.ask) if (buy and u.ask) else u.low
    hi = max(u.high, u.bid) if (not buy and u.bid) else u.high
    ref_open = market_price(buy, u.open, u.bid, u.ask)

    price: float | None
    if typ is OrderType.MARKET:
        price = ref_open
    elif typ is OrderType.LIMIT:
        limit = order.limit_price
        assert limit is not None  # Order validates that a limit order has its price
        price = limit_fill_price(buy, limit, ref_open, lo, hi)
        if price is None:
            return None
    else:
        stop = order.stop_price
        if stop is None:  # a trailing stop that has no level yet: this update sets it
            return None
        if not triggered:
            if not stop_touched(buy, stop, u.high, u.low, u.bid, u.ask):
                return None
            triggered = True
            trigger_px = stop_price(buy, stop, ref_open)
        else:
            trigger_px = ref_open
        if typ is OrderType.STOP or typ is OrderType.TRAIL:
            price = trigger_px
        else:
            stop_limit = order.limit_price
            assert stop_limit is not None
            # After the trigger the order is a limit order for the rest of the update.
            start = trigger_px
            if buy:
                price = start if start <= stop_limit else (stop_limit if lo <= stop_limit else None)
            else:
                price = start if start >= stop_limit else (stop_limit if hi >= stop_limit else None)
            if price is None:
                return FillDecision(0.0, 0.0, True)
    fill_qty = _cap(qty, u, participation, whole_units)
    if fill_qty <= 0:
        return FillDecision(0.0, 0.0, triggered) if triggered != order.triggered else None
    return FillDecision(fill_qty, float(price), triggered)
