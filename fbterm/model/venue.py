"""What a venue says about an instrument once it has qualified it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class VenueContract:
    """An instrument as the venue identifies it: its contract id and listing.

    Orders name the contract by ``con_id`` and ``primary_exchange``, so a symbol listed on
    several exchanges can never be routed to the wrong one.
    """

    key: str  # fbterm's instrument key (``AAPL``, ``AAPL 20250117 C150``)
    con_id: int
    exchange: str
    primary_exchange: str
    currency: str
    local_symbol: str = ""
    trading_class: str = ""
    multiplier: str = ""
    ts: float = 0.0  # when the venue qualified it
