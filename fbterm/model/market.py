"""Market data and signals: ticks, bars, option quotes, account details."""

from __future__ import annotations

from dataclasses import dataclass, field

from fbterm.model.instruments import Instrument, Option
from fbterm.model.orders import OrderType, Side, TimeInForce, utc_now, validate_order_fields

# ---------------------------------------------------------------------------- signals


@dataclass(frozen=True, slots=True)
class Signal:
    """A strategy's (or an operator's) wish to trade: the input of ``create_order``."""

    strategy_id: str
    instrument: Instrument
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    tif: TimeInForce = TimeInForce.DAY
    signal_price: float | None = None  # the price the strategy saw; slippage is measured from it
    ts: float = field(default_factory=utc_now)
    reason: str = ""

    def __post_init__(self) -> None:
        validate_order_fields(
            "",
            self.quantity,
            self.order_type,
            self.limit_price,
            self.stop_price,
            instrument=self.instrument,
        )


# ---------------------------------------------------------------------------- market data


@dataclass(frozen=True, slots=True)
class Tick:
    """One quote update. ``last`` is the trade price, ``volume`` the size traded since the last tick."""

    symbol: str
    ts: float
    bid: float
    ask: float
    last: float
    volume: float = 0.0

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


@dataclass(frozen=True, slots=True)
class Bar:
    symbol: str
    ts: float  # bar open time, epoch seconds UTC
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


@dataclass(frozen=True, slots=True)
class OptionQuote:
    instrument: Option
    ts: float
    bid: float
    ask: float
    underlying_price: float
    iv: float
    delta: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2.0


# ---------------------------------------------------------------------------- account


@dataclass(frozen=True, slots=True)
class AccountDetails:
    account: str
    cash: float
    equity: float  # net liquidation value
    buying_power: float
    margin_used: float = 0.0  # initial margin requirement in use
    maintenance_margin: float = 0.0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    currency: str = "USD"
    ts: float = field(default_factory=utc_now)
