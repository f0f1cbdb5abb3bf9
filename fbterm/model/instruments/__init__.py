"""Instruments: what can be traded, and the key that names each one.

One module per asset class (:mod:`.stock`, :mod:`.option`, :mod:`.future`, :mod:`.forex`);
each defines its frozen dataclass and registers how its key parses back in :mod:`.registry`.
Every instrument carries ``multiplier``, ``tick_size``, ``lot_size`` and ``currency``: money
figures are ``quantity * price * multiplier`` in ``currency``, average prices exclude the
multiplier, and a quantity must be a whole number of ``lot_size`` units.

Adding an asset class: a module here that registers its key parser, its name in
:data:`Instrument`, and its contract mapping in the IB adapter.
"""

from __future__ import annotations

import functools

from fbterm.model.instruments.forex import Forex
from fbterm.model.instruments.future import FUTURE_SPECS, Future, FutureSpec, front_month
from fbterm.model.instruments.option import Option, Right
from fbterm.model.instruments.registry import lot_error, parsers, round_to_tick
from fbterm.model.instruments.stock import Stock  # the catch-all parser: registered last

Instrument = Stock | Option | Future | Forex

# What an instrument key looks like, for the errors that refuse one.
KEY_HELP = (
    "a symbol (AAPL), an option (AAPL 20261218 C200), a future (ES 20261218 FUT) "
    "or a currency pair (EUR/USD)"
)


@functools.lru_cache(maxsize=8192)  # pure, and instruments are immutable
def instrument_from_key(key: str) -> Instrument:
    """Parse a key (``AAPL``, ``AAPL 20250117 C150``, ``ES 20251219 FUT``, ``EUR/USD``) back
    into its instrument; ValueError names the key when no asset class claims it."""
    for _, parse in parsers():
        inst = parse(key)
        if inst is not None:
            assert isinstance(inst, Stock | Option | Future | Forex)
            return inst
    raise ValueError(f"not an instrument key: {key!r}")


def quantity_error(inst: Instrument, quantity: float) -> str | None:
    """Why ``quantity`` cannot be traded in ``inst`` (not a whole number of lots), or None."""
    return lot_error(quantity, inst.lot_size, inst.key)


def allows_fractional(inst: Instrument) -> bool:
    return inst.lot_size < 1.0


__all__ = [
    "FUTURE_SPECS",
    "KEY_HELP",
    "Forex",
    "Future",
    "FutureSpec",
    "Instrument",
    "Option",
    "Right",
    "Stock",
    "allows_fractional",
    "front_month",
    "instrument_from_key",
    "quantity_error",
    "round_to_tick",
]
