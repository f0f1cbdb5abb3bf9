"""Currency pairs on IDEALPRO: key ``EUR/USD``; quantities are in the base currency (EUR) and
prices, P&L and exposure in the quote currency (USD)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from fbterm.model.instruments.registry import AssetClass, register


@dataclass(frozen=True, slots=True)
class Forex(AssetClass):
    ASSET_CLASS: ClassVar[str] = "CASH"  # lots: one unit of the base currency

    base: str
    quote: str
    exchange: str = "IDEALPRO"

    def __post_init__(self) -> None:
        for name in ("base", "quote"):
            v = getattr(self, name).strip().upper()
            if not re.fullmatch(r"[A-Z]{3}", v):
                raise ValueError(f"forex {name} currency must be a 3-letter code, got {v!r}")
            object.__setattr__(self, name, v)
        if self.base == self.quote:
            raise ValueError(f"forex pair needs two currencies, got {self.base}/{self.quote}")

    @property
    def key(self) -> str:
        return f"{self.base}/{self.quote}"

    @property
    def symbol(self) -> str:
        return self.key

    @property
    def underlying(self) -> str:
        return self.key

    @property
    def currency(self) -> str:
        return self.quote

    @property
    def multiplier(self) -> int:
        return 1

    @property
    def tick_size(self) -> float:
        # IDEALPRO quotes in half pips (a pip is 0.01 against the yen).
        return 0.005 if self.quote == "JPY" else 0.00005


_FOREX_KEY = re.compile(r"^(?P<base>[A-Z]{3})/(?P<quote>[A-Z]{3})$")


def parse_forex_key(key: str) -> Forex | None:
    m = _FOREX_KEY.match(key.strip().upper())
    return Forex(m["base"], m["quote"]) if m else None


register("CASH", parse_forex_key)
