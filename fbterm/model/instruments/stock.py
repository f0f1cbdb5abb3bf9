"""Stocks (and ETFs): the catch-all key is a bare symbol such as ``AAPL`` or ``BRK.B``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from fbterm.model.instruments.registry import AssetClass, register


@dataclass(frozen=True, slots=True)
class Stock(AssetClass):
    # Lots of one share: fractional shares are not available through the API for most
    # accounts.
    ASSET_CLASS: ClassVar[str] = "STK"

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
    def tick_size(self) -> float:
        return 0.01


def parse_stock_key(key: str) -> Stock | None:
    sym = key.strip().upper()
    if not sym or " " in sym or "/" in sym:
        return None
    return Stock(sym)


register("STK", parse_stock_key)
