"""Instruments: what can be traded, and the key that names each one."""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass, field
from enum import StrEnum

# ---------------------------------------------------------------------------- instruments


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, slots=True)
class Stock:
    symbol: str
    exchange: str = "SMART"
    currency: str = "USD"

    @property
    def key(self) -> str:
        return self.symbol

    @property
    def underlying(self) -> str:
        return self.symbol

    @property
    def multiplier(self) -> int:
        return 1

    @property
    def is_option(self) -> bool:
        return False


@dataclass(frozen=True, slots=True)
class Option:
    underlying: str
    right: Right
    strike: float
    expiry: dt.date
    multiplier: int = 100
    exchange: str = "SMART"
    currency: str = "USD"
    # The key, formatted once: it is looked up on every tick, fill and risk check.
    _key: str = field(default="", init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        right: object = self.right  # a str straight from a journal row or a config file
        if not isinstance(right, Right):
            object.__setattr__(self, "right", Right(str(right).upper()[:1]))
        if self.strike <= 0:
            raise ValueError(f"option strike must be > 0, got {self.strike}")
        strike = f"{self.strike:g}"
        object.__setattr__(
            self, "_key", f"{self.underlying} {self.expiry:%Y%m%d} {self.right.value}{strike}"
        )

    @property
    def key(self) -> str:
        return self._key

    @property
    def symbol(self) -> str:
        return self.key

    @property
    def is_option(self) -> bool:
        return True


Instrument = Stock | Option

_OPTION_KEY = re.compile(
    r"^(?P<und>[A-Z0-9.\-]+) (?P<exp>\d{8}) (?P<right>[CP])(?P<strike>\d+(?:\.\d+)?)$"
)


@functools.lru_cache(maxsize=8192)  # pure, and instruments are immutable
def instrument_from_key(key: str) -> Instrument:
    """Parse ``AAPL`` or ``AAPL 20250117 C150`` back into an instrument."""
    m = _OPTION_KEY.match(key.strip())
    if m:
        return Option(
            underlying=m["und"],
            right=Right(m["right"]),
            strike=float(m["strike"]),
            expiry=dt.datetime.strptime(m["exp"], "%Y%m%d").date(),
        )
    sym = key.strip().upper()
    if not sym or " " in sym:
        raise ValueError(f"not an instrument key: {key!r}")
    return Stock(sym)
