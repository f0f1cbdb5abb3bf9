"""The key registry: each asset-class module registers how to parse its keys back.

An instrument's ``key`` is its identity everywhere (journal rows, positions, market data,
the order ticket); :func:`parse_key` turns one back into the instrument. Each asset class
registers one parser; parsers are tried in registration order and answer ``None`` for a key
that is not theirs, so the catch-all (a plain stock symbol) registers last.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol


class InstrumentLike(Protocol):
    """What every asset class offers (the rest of fbterm reads only this)."""

    @property
    def key(self) -> str: ...
    @property
    def symbol(self) -> str: ...
    @property
    def underlying(self) -> str: ...
    @property
    def multiplier(self) -> int: ...
    @property
    def tick_size(self) -> float: ...
    @property
    def lot_size(self) -> float: ...
    @property
    def currency(self) -> str: ...
    @property
    def exchange(self) -> str: ...
    @property
    def asset_class(self) -> str: ...
    @property
    def is_option(self) -> bool: ...


class AssetClass:
    """What an asset class states once, as class constants, rather than computes: its IB
    security type, whether it is an option, and its lot (whole units unless it says)."""

    __slots__ = ()
    ASSET_CLASS: ClassVar[str]
    IS_OPTION: ClassVar[bool] = False
    LOT_SIZE: ClassVar[float] = 1.0

    @property
    def asset_class(self) -> str:
        return self.ASSET_CLASS

    @property
    def is_option(self) -> bool:
        return self.IS_OPTION

    @property
    def lot_size(self) -> float:
        return self.LOT_SIZE


KeyParser = Callable[[str], object | None]

_PARSERS: list[tuple[str, KeyParser]] = []


def register(asset_class: str, parser: KeyParser) -> None:
    """Register the key parser of one asset class (idempotent per asset class)."""
    for i, (name, _) in enumerate(_PARSERS):
        if name == asset_class:
            _PARSERS[i] = (asset_class, parser)
            return
    _PARSERS.append((asset_class, parser))


def parsers() -> list[tuple[str, KeyParser]]:
    return list(_PARSERS)


def round_to_tick(price: float, tick: float) -> float:
    """``price`` on the instrument's price grid (ticks like 1/64 are exact in binary)."""
    if tick <= 0:
        return price
    return round(round(price / tick) * tick, 10)


def lot_error(quantity: float, lot_size: float, what: str) -> str | None:
    """Why ``quantity`` is not a whole number of lots of ``what``, or None if it is."""
    if lot_size <= 0:
        return None
    lots = quantity / lot_size
    if abs(lots - round(lots)) > 1e-9:
        return f"{what} trades in lots of {lot_size:g}; {quantity:g} is not a multiple"
    return None
