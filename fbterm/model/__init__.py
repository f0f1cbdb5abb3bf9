"""The domain model: instruments, orders and their state machine, fills, positions, states.

Everything here is immutable. An order changes by producing a new ``Order`` through
:meth:`Order.transition`, which refuses an illegal move and leaves the old value untouched;
positions change only by :meth:`Position.apply_fill`. That makes snapshots for the UI free
and makes "positions are derived from fills" a property of the types, not a convention.

The submodules each hold one part; this package re-exports the names callers use.
"""

from fbterm.model.fills import Fill, Position, positions_from_fills
from fbterm.model.instruments import (
    Forex,
    Future,
    Instrument,
    Option,
    Right,
    Stock,
    allows_fractional,
    instrument_from_key,
    quantity_error,
)
from fbterm.model.market import AccountDetails, Bar, MarginImpact, OptionQuote, Signal, Tick
from fbterm.model.orders import (
    TERMINAL_STATUSES,
    TRANSITIONS,
    IllegalTransition,
    Order,
    OrderError,
    OrderOptions,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    utc_now,
    validate_order_fields,
)
from fbterm.model.states import StrategyState, TradingState

__all__ = [
    "TERMINAL_STATUSES",
    "TRANSITIONS",
    "AccountDetails",
    "Bar",
    "Fill",
    "Forex",
    "Future",
    "IllegalTransition",
    "Instrument",
    "MarginImpact",
    "Option",
    "OptionQuote",
    "Order",
    "OrderError",
    "OrderOptions",
    "OrderStatus",
    "OrderType",
    "Position",
    "Right",
    "Side",
    "Signal",
    "Stock",
    "StrategyState",
    "Tick",
    "TimeInForce",
    "TradingState",
    "allows_fractional",
    "instrument_from_key",
    "positions_from_fills",
    "quantity_error",
    "utc_now",
    "validate_order_fields",
]
