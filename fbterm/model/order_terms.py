"""Order terms as one line of text, for the ticket and the command line.

``tp=110 sl=95`` (a bracket), ``trail=1.5`` or ``trail=2%`` (a trailing stop's distance),
``tif=IOC``, ``gtd=2026-01-02T16:00`` (UTC unless an offset is given; implies ``tif=GTD``),
``outside-rth``, ``algo=adaptive`` or ``algo=adaptive:patient``. Terms are separated by spaces.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from fbterm.model.orders import ALGO_PRIORITIES, OrderError, OrderOptions, OrderType, TimeInForce

KNOWN = "tp, sl, trail, tif, gtd, outside-rth, algo"


@dataclass(frozen=True, slots=True)
class OrderTerms:
    tif: TimeInForce | None = None  # None: the caller's default
    options: OrderOptions = field(default_factory=OrderOptions)
    take_profit: float | None = None
    stop_loss: float | None = None

    @property
    def trailing(self) -> bool:
        return self.options.trail_amount is not None or self.options.trail_percent is not None


def order_type_for(limit: float | None, stop: float | None, *, trailing: bool) -> OrderType:
    """The order type a command line or a script means by the prices it gives: a trail
    distance makes a trailing stop (a stop price is then its first level), a limit and a stop
    a stop-limit, either alone a limit or a stop order, neither a market order."""
    if trailing:
        return OrderType.TRAIL
    if limit is not None and stop is not None:
        return OrderType.STOP_LIMIT
    if limit is not None:
        return OrderType.LIMIT
    if stop is not None:
        return OrderType.STOP
    return OrderType.MARKET


def _price(name: str, text: str) -> float:
    try:
        v = float(text.replace(",", ""))
    except ValueError:
        raise OrderError(f"terms: {name}: not a number: {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise OrderError(f"terms: {name}: must be > 0, got {text}")
    return v


def _when(text: str) -> float:
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise OrderError(
            f"terms: gtd: not a date and time: {text!r} (e.g. 2026-01-02T16:00)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def parse_order_terms(text: str) -> OrderTerms:
    """The terms in ``text``; OrderError names the term that is wrong."""
    tif: TimeInForce | None = None
    tp = sl = amount = percent = good_till = None
    outside = False
    algo, priority = "", "Normal"
    for tok in text.split():
        key, _, val = tok.partition("=")
        key = key.lower()
        if key in ("outside-rth", "outside_rth", "orth"):
            outside = True
        elif not val:
            raise OrderError(f"terms: {tok!r} needs a value (known terms: {KNOWN})")
        elif key == "tp":
            tp = _price("tp", val)
        elif key == "sl":
            sl = _price("sl", val)
        elif key == "trail":
            if val.endswith("%"):
                percent = _price("trail", val[:-1])
            else:
                amount = _price("trail", val)
        elif key == "tif":
            try:
                tif = TimeInForce(val.upper())
            except ValueError:
                names = ", ".join(t.value for t in TimeInForce)
                raise OrderError(f"terms: tif must be one of {names}, got {val!r}") from None
        elif key == "gtd":
            good_till = _when(val)
            tif = TimeInForce.GTD
        elif key == "algo":
            name, _, prio = val.partition(":")
            if name.lower() != "adaptive":
                raise OrderError(f"terms: algo must be adaptive, got {name!r}")
            algo = "Adaptive"
            if prio:
                match = [p for p in ALGO_PRIORITIES if p.lower() == prio.lower()]
                if not match:
                    raise OrderError(
                        f"terms: algo priority must be one of {', '.join(ALGO_PRIORITIES)}, "
                        f"got {prio!r}"
                    )
                priority = match[0]
        else:
            raise OrderError(f"terms: unknown term {tok!r} (known terms: {KNOWN})")
    return OrderTerms(
        tif,
        OrderOptions(
            trail_amount=amount,
            trail_percent=percent,
            good_till=good_till,
            outside_rth=outside,
            algo=algo,
            algo_priority=priority,
        ),
        tp,
        sl,
    )


def terms_text(options: OrderOptions) -> str:
    """``options`` in the syntax :func:`parse_order_terms` reads (which reads it back equal):
    what ``fbterm orders`` shows of a working order beyond its type, prices and tif."""
    parts = []
    if options.trail_amount is not None:
        parts.append(f"trail={options.trail_amount:g}")
    if options.trail_percent is not None:
        parts.append(f"trail={options.trail_percent:g}%")
    if options.good_till is not None:
        when = dt.datetime.fromtimestamp(options.good_till, dt.UTC)
        parts.append(f"gtd={when.isoformat(timespec='seconds')}")
    if options.outside_rth:
        parts.append("outside-rth")
    if options.algo:
        parts.append(f"algo={options.algo.lower()}:{options.algo_priority.lower()}")
    return " ".join(parts)
