"""What the test gateway keeps: orders, executions, positions, sessions, bar data."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fbterm.testing.ibserver.protocol import ContractFields, encode

DEFAULT_ACCOUNT_VALUES: dict[str, float] = {
    "NetLiquidation": 1_000_000.0,
    "TotalCashValue": 1_000_000.0,
    "BuyingPower": 4_000_000.0,
    "AvailableFunds": 1_000_000.0,
    "ExcessLiquidity": 1_000_000.0,
    "InitMarginReq": 0.0,
    "MaintMarginReq": 0.0,
    "GrossPositionValue": 0.0,
    "RealizedPnL": 0.0,
    "UnrealizedPnL": 0.0,
}


@dataclass(slots=True)
class ServerOrder:
    """One order at the gateway. ``client_id`` 0 with ``order_id`` 0 is a manual TWS order."""

    client_id: int
    order_id: int
    perm_id: int
    contract: ContractFields
    action: str
    total_qty: float
    order_type: str
    lmt_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    status: str = "Submitted"
    filled: float = 0.0
    avg_price: float = 0.0
    last_fill_price: float = 0.0
    completed_status: str = ""  # IB's words when it ended (completed orders carry them)
    completed_ts: float = 0.0

    @property
    def remaining(self) -> float:
        return max(self.total_qty - self.filled, 0.0)

    @property
    def is_open(self) -> bool:
        return self.status in ("PreSubmitted", "Submitted", "PendingCancel")


@dataclass(slots=True)
class ServerExecution:
    exec_id: str
    order: ServerOrder
    shares: float
    price: float
    ts: float
    cum_qty: float
    avg_price: float
    commission: float


@dataclass(slots=True)
class ServerPosition:
    contract: ContractFields
    quantity: float
    avg_cost: float  # per unit times multiplier, as IB reports it
    account: str = ""


@dataclass(frozen=True, slots=True)
class HistoricalRequest:
    """What a client asked for (tests assert on the requests a pager made)."""

    req_id: int
    symbol: str
    end: str
    duration: str
    bar_size: str
    what_to_show: str
    use_rth: bool
    format_date: int
    received: float


@dataclass
class Session:
    """One client connection."""

    writer: asyncio.StreamWriter
    client_id: int = -1
    positions_sub: bool = False
    account_sub: bool = False
    mkt: dict[int, str] = field(default_factory=dict)
    cursors: dict[int, int] = field(default_factory=dict)
    received: list[tuple[int, float]] = field(default_factory=list)  # (msg id, monotonic time)

    def send(self, *fields: Any) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(*fields))


def synthetic_bars(
    symbols: Iterable[str] = ("AAPL", "MSFT", "SPY", "NVDA"),
    *,
    start: str = "2024-01-02 14:30",
    periods: int = 3 * 390,
    freq: str = "1min",
    seed: int = 11,
) -> dict[str, pd.DataFrame]:
    """Deterministic random-walk bars in fbterm's bar shape, one frame per symbol."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range(start, periods=periods, freq=freq, tz="UTC", name="ts").as_unit("ns")
    out: dict[str, pd.DataFrame] = {}
    for i, sym in enumerate(symbols):
        base = 100.0 + 50.0 * i
        close = base * np.exp(np.cumsum(rng.normal(0, 0.001, periods)))
        open_ = np.concatenate([[base], close[:-1]])
        spread = np.abs(rng.normal(0, 0.0005, periods)) * close
        out[sym] = pd.DataFrame(
            {
                "open": open_,
                "high": np.maximum(open_, close) + spread,
                "low": np.minimum(open_, close) - spread,
                "close": close,
                "volume": rng.integers(100, 5000, periods).astype(float),
            },
            index=idx,
        )
    return out
