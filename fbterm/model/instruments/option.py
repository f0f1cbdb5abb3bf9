"""Options on a stock: key ``AAPL 20250117 C150`` (underlying, expiry, right and strike)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from fbterm.model.instruments.registry import AssetClass, register


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


@dataclass(frozen=True, slots=True)
class Option(AssetClass):
    ASSET_CLASS: ClassVar[str] = "OPT"
    IS_OPTION: ClassVar[bool] = True

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
        key = f"{self.underlying} {self.expiry:%Y%m%d} {self.right.value}{strike}"
        if self.multiplier != 100:  # the standard US equity contract needs no mention
            key += f" x{self.multiplier}"
        object.__setattr__(self, "_key", key)

    @property
    def key(self) -> str:
        return self._key

    @property
    def symbol(self) -> str:
        return self.key

    @property
    def tick_size(self) -> float:
        return 0.01


_OPTION_KEY = re.compile(
    r"^(?P<und>[A-Z0-9.\-]+) (?P<exp>\d{8}) (?P<right>[CP])(?P<strike>\d+(?:\.\d+)?)"
    r"(?: X(?P<mult>\d+))?$"
)


def parse_option_key(key: str) -> Option | None:
    m = _OPTION_KEY.match(key.strip().upper())
    if not m:
        return None
    return Option(
        underlying=m["und"],
        right=Right(m["right"]),
        strike=float(m["strike"]),
        expiry=dt.datetime.strptime(m["exp"], "%Y%m%d").date(),
        multiplier=int(m["mult"]) if m["mult"] else 100,
    )


register("OPT", parse_option_key)
