"""Market data and signals: ticks, bars, option quotes, account details."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fbterm.model.instruments import Instrument, Option
from fbterm.model.orders import (
    PLAIN,
    OrderError,
    OrderOptions,
    OrderType,
    Side,
    TimeInForce,
    utc_now,
    validate_order_fields,
)

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
    options: OrderOptions = PLAIN
    # A bracket: exits placed with the entry, working once it fills, one cancelling the other.
    take_profit: float | None = None
    stop_loss: float | None = None

    def __post_init__(self) -> None:
        validate_order_fields(
            "",
            self.quantity,
            self.order_type,
            self.limit_price,
            self.stop_price,
            instrument=self.instrument,
        )
        if (
            self.options is not PLAIN
            or self.tif is TimeInForce.GTD
            or self.order_type is OrderType.TRAIL
        ):
            self.options.validate("order", self.order_type, self.tif)
        for name in ("take_profit", "stop_loss"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise OrderError(f"order: {name.replace('_', '-')} must be > 0, got {v!r}")
        tp, sl = self.take_profit, self.stop_loss
        if tp is not None and sl is not None and (tp > sl) != (self.side is Side.BUY):
            want = "above" if self.side is Side.BUY else "below"
            raise OrderError(
                f"order: a {self.side.value} bracket's take-profit {tp:g} must be {want} "
                f"its stop-loss {sl:g}"
            )

    @property
    def is_bracket(self) -> bool:
        return self.take_profit is not None or self.stop_loss is not None


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


@dataclass(frozen=True, slots=True)
class MarginImpact:
    """What a broker says an order would do to the account's margin (IB's what-if)."""

    init_margin_change: float
    maint_margin_change: float
    init_margin_after: float
    maint_margin_after: float
    equity_with_loan: float
    commission: float | None = None
    warning: str = ""

    def describe(self) -> str:
        fee = f", commission {self.commission:,.2f}" if self.commission is not None else ""
        return (
            f"initial margin {self.init_margin_change:+,.0f} (to {self.init_margin_after:,.0f}), "
            f"maintenance {self.maint_margin_change:+,.0f}{fee}"
            + (f"; {self.warning}" if self.warning else "")
        )
