"""Orders and their state machine.

An order changes only by producing a new ``Order`` through :meth:`Order.transition`, which
refuses an illegal move and leaves the old value untouched.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fbterm.model.instruments import Instrument, instrument_from_key

# --------------------------------------------------------------------------------- orders


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    MARKET = "MKT"
    LIMIT = "LMT"
    STOP = "STP"
    STOP_LIMIT = "STP LMT"
    TRAIL = "TRAIL"  # a stop that follows the market by an amount or a percent


class TimeInForce(StrEnum):
    DAY = "DAY"
    GTC = "GTC"
    IOC = "IOC"  # fill what the next price allows, cancel the rest
    GTD = "GTD"  # good until OrderOptions.good_till


ALGOS = ("", "Adaptive")
ALGO_PRIORITIES = ("Urgent", "Normal", "Patient")
# Types whose stop_price is a trigger (for TRAIL: the current trailing level, set by the venue).
STOP_TYPES = frozenset({"STP", "STP LMT", "TRAIL"})


@dataclass(frozen=True, slots=True)
class OrderOptions:
    """The order's terms beyond type and prices: trailing distance, expiry time, session and
    IB's Adaptive algo. The defaults are a plain order."""

    trail_amount: float | None = None  # TRAIL: distance in price
    trail_percent: float | None = None  # TRAIL: distance in percent of the price
    good_till: float | None = None  # GTD: epoch seconds UTC
    outside_rth: bool = False  # may trigger and fill outside regular trading hours
    algo: str = ""  # "" or "Adaptive"
    algo_priority: str = "Normal"  # Adaptive: Urgent, Normal or Patient

    def validate(self, where: str, order_type: OrderType, tif: TimeInForce) -> None:
        trail = [v for v in (self.trail_amount, self.trail_percent) if v is not None]
        if order_type is OrderType.TRAIL:
            if len(trail) != 1:
                raise OrderError(f"{where}: TRAIL needs a trail amount or a trail percent")
            v = trail[0]
            if not (math.isfinite(v) and v > 0):
                raise OrderError(f"{where}: trail distance must be > 0, got {v!r}")
            if self.trail_percent is not None and self.trail_percent >= 100:
                raise OrderError(f"{where}: trail percent must be < 100, got {v!r}")
        elif trail:
            raise OrderError(f"{where}: {order_type.value} takes no trail distance")
        if tif is TimeInForce.GTD and (self.good_till is None or not math.isfinite(self.good_till)):
            raise OrderError(f"{where}: GTD needs a good-till time")
        if tif is not TimeInForce.GTD and self.good_till is not None:
            raise OrderError(f"{where}: a good-till time needs time in force GTD, not {tif.value}")
        if self.algo not in ALGOS:
            raise OrderError(f"{where}: algo must be one of Adaptive or none, got {self.algo!r}")
        if self.algo and order_type not in (OrderType.MARKET, OrderType.LIMIT):
            raise OrderError(f"{where}: the {self.algo} algo takes MKT or LMT orders only")
        if self.algo_priority not in ALGO_PRIORITIES:
            raise OrderError(
                f"{where}: algo priority must be one of {', '.join(ALGO_PRIORITIES)}, "
                f"got {self.algo_priority!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Only what differs from a plain order (journal rows stay small)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> OrderOptions:
        if not d:
            return PLAIN
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


PLAIN = OrderOptions()


class OrderStatus(StrEnum):
    PENDING_SUBMIT = "PendingSubmit"
    SUBMITTED = "Submitted"
    PARTIALLY_FILLED = "PartiallyFilled"
    PENDING_CANCEL = "PendingCancel"
    FILLED = "Filled"
    CANCELLED = "Cancelled"
    REJECTED = "Rejected"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def is_live(self) -> bool:
        return self not in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED})

S = OrderStatus
# Which status may follow which. A fill can race a cancel request, and a broker can refuse a
# cancel (the order then goes back to working), so PENDING_CANCEL has several exits.
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.PENDING_SUBMIT: frozenset(
        {S.SUBMITTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELLED, S.REJECTED}
    ),
    S.SUBMITTED: frozenset(
        {S.SUBMITTED, S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELLED, S.REJECTED}
    ),
    S.PARTIALLY_FILLED: frozenset({S.PARTIALLY_FILLED, S.FILLED, S.PENDING_CANCEL, S.CANCELLED}),
    S.PENDING_CANCEL: frozenset(
        {S.PENDING_CANCEL, S.SUBMITTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED}
    ),
    S.FILLED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REJECTED: frozenset(),
}
del S


class IllegalTransition(ValueError):
    """An order was asked to move to a status its current status does not allow."""

    def __init__(self, order_id: str, current: OrderStatus, requested: OrderStatus, why: str = ""):
        self.order_id = order_id
        self.current = current
        self.requested = requested
        msg = f"order {order_id}: illegal transition {current.value} -> {requested.value}"
        super().__init__(msg + (f" ({why})" if why else ""))


class OrderError(ValueError):
    """An order (or a change to one) is malformed: it names what is wrong."""


def utc_now() -> float:
    return dt.datetime.now(dt.UTC).timestamp()


@dataclass(frozen=True, slots=True)
class Order:
    """One order and where it is in its life. Immutable: every change returns a new Order."""

    client_order_id: str
    instrument: Instrument
    side: Side
    quantity: float
    order_type: OrderType = OrderType.MARKET
    limit_price: float | None = None
    stop_price: float | None = None
    tif: TimeInForce = TimeInForce.DAY
    strategy_id: str = "manual"
    status: OrderStatus = OrderStatus.PENDING_SUBMIT
    filled_quantity: float = 0.0
    avg_fill_price: float = 0.0
    created_ts: float = field(default_factory=utc_now)
    updated_ts: float = 0.0
    broker_order_id: str | None = None
    reason: str = ""
    signal_price: float | None = None
    triggered: bool = False  # a stop or stop-limit whose stop price has been touched
    submitted_ts: float | None = None  # when the broker acknowledged it
    revision: int = 0  # bumped by every modification
    broker_perm_id: str | None = None  # the venue's permanent id (IB permId), once known
    options: OrderOptions = PLAIN
    # Brackets: a child names its parent (it works once the parent has filled); orders in one
    # OCA group cancel (or reduce) each other when one fills.
    parent_id: str | None = None
    oca_group: str = ""

    def __post_init__(self) -> None:
        validate_order_fields(
            self.client_order_id,
            self.quantity,
            self.order_type,
            self.limit_price,
            self.stop_price,
        )
        if (
            self.options is not PLAIN
            or self.tif is TimeInForce.GTD
            or self.order_type is OrderType.TRAIL
        ):
            self.options.validate(
                f"order {self.client_order_id}" if self.client_order_id else "order",
                self.order_type,
                self.tif,
            )

    # -- derived -------------------------------------------------------------------------
    @property
    def symbol(self) -> str:
        return self.instrument.key

    @property
    def remaining(self) -> float:
        return max(self.quantity - self.filled_quantity, 0.0)

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity

    @property
    def is_live(self) -> bool:
        return self.status.is_live

    @property
    def multiplier(self) -> int:
        return self.instrument.multiplier

    def reference_price(self) -> float | None:
        """The price that best describes what this order is worth before it fills."""
        if self.limit_price is not None:
            return self.limit_price
        if self.stop_price is not None:
            return self.stop_price
        return self.signal_price

    # -- the state machine ---------------------------------------------------------------
    def transition(self, status: OrderStatus, *, ts: float | None = None, **changes: Any) -> Order:
        allowed = TRANSITIONS[self.status]
        if status not in allowed:
            why = "order is already final" if self.status.is_terminal else ""
            raise IllegalTransition(self.client_order_id, self.status, status, why)
        return _evolve(self, {"status": status, "updated_ts": ts or utc_now(), **changes})

    def with_fill(self, quantity: float, price: float, *, ts: float | None = None) -> Order:
        """The order after a fill of ``quantity`` at ``price`` (status follows the totals)."""
        if quantity <= 0:
            raise OrderError(
                f"order {self.client_order_id}: fill quantity must be > 0, got {quantity}"
            )
        if quantity > self.remaining + 1e-9:
            raise OrderError(
                f"order {self.client_order_id}: fill of {quantity:g} exceeds remaining {self.remaining:g}"
            )
        filled = self.filled_quantity + quantity
        avg = (self.avg_fill_price * self.filled_quantity + price * quantity) / filled
        done = filled >= self.quantity - 1e-9
        new_status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        if self.status is OrderStatus.PENDING_CANCEL and not done:
            new_status = OrderStatus.PENDING_CANCEL
        return self.transition(new_status, ts=ts, filled_quantity=filled, avg_fill_price=avg)

    def modified(
        self,
        *,
        quantity: float | None = None,
        order_type: OrderType | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
        ts: float | None = None,
    ) -> Order:
        """A live order with new terms. Quantity may not drop below what has already filled."""
        if not self.status.is_live or self.status is OrderStatus.PENDING_CANCEL:
            raise IllegalTransition(
                self.client_order_id,
                self.status,
                self.status,
                "only a working order can be modified",
            )
        new_type = order_type or self.order_type
        new_qty = self.quantity if quantity is None else float(quantity)
        if self.filled_quantity > 0 and new_qty <= self.filled_quantity + 1e-9:
            raise OrderError(
                f"order {self.client_order_id}: new quantity {new_qty:g} must exceed filled {self.filled_quantity:g}"
            )
        lp = limit_price if limit_price is not None else self.limit_price
        sp = stop_price if stop_price is not None else self.stop_price
        if new_type in (OrderType.MARKET, OrderType.STOP, OrderType.TRAIL):
            lp = None
        if new_type in (OrderType.MARKET, OrderType.LIMIT):
            sp = None
        validate_order_fields(
            self.client_order_id, new_qty, new_type, lp, sp, instrument=self.instrument
        )
        return dataclasses.replace(
            self,
            quantity=new_qty,
            order_type=new_type,
            limit_price=lp,
            stop_price=sp,
            updated_ts=ts or utc_now(),
            revision=self.revision + 1,
            triggered=self.triggered and new_type.value in STOP_TYPES,
        )

    # -- persistence ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.client_order_id,
            "instrument": self.instrument.key,
            "side": self.side.value,
            "qty": self.quantity,
            "type": self.order_type.value,
            "lmt": self.limit_price,
            "stp": self.stop_price,
            "tif": self.tif.value,
            "strategy": self.strategy_id,
            "status": self.status.value,
            "filled": self.filled_quantity,
            "avg": self.avg_fill_price,
            "created": self.created_ts,
            "updated": self.updated_ts,
            "broker_id": self.broker_order_id,
            "reason": self.reason,
            "signal_price": self.signal_price,
            "triggered": self.triggered,
            "submitted_ts": self.submitted_ts,
            "rev": self.revision,
            "perm_id": self.broker_perm_id,
            **({"opts": self.options.to_dict()} if self.options is not PLAIN else {}),
            **({"parent": self.parent_id} if self.parent_id else {}),
            **({"oca": self.oca_group} if self.oca_group else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Order:
        return cls(
            client_order_id=d["id"],
            instrument=instrument_from_key(d["instrument"]),
            side=Side(d["side"]),
            quantity=float(d["qty"]),
            order_type=OrderType(d["type"]),
            limit_price=d.get("lmt"),
            stop_price=d.get("stp"),
            tif=TimeInForce(d.get("tif", "DAY")),
            strategy_id=d.get("strategy", "manual"),
            status=OrderStatus(d.get("status", OrderStatus.PENDING_SUBMIT.value)),
            filled_quantity=float(d.get("filled", 0.0)),
            avg_fill_price=float(d.get("avg", 0.0)),
            created_ts=float(d.get("created", 0.0)),
            updated_ts=float(d.get("updated", 0.0)),
            broker_order_id=d.get("broker_id"),
            reason=d.get("reason", ""),
            signal_price=d.get("signal_price"),
            triggered=bool(d.get("triggered", False)),
            submitted_ts=d.get("submitted_ts"),
            revision=int(d.get("rev", 0)),
            broker_perm_id=d.get("perm_id"),
            options=OrderOptions.from_dict(d.get("opts")),
            parent_id=d.get("parent"),
            oca_group=d.get("oca", ""),
        )


_ORDER_FIELDS = tuple(f.name for f in dataclasses.fields(Order))
# Fields a status change may set without re-running the order's validation.
_FREE_FIELDS = frozenset(_ORDER_FIELDS) - {
    "client_order_id",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "options",
    "tif",
}


def _evolve(order: Order, changes: dict[str, Any]) -> Order:
    """``dataclasses.replace`` for the hot path (a third of its cost): a status change never
    touches the validated terms, so it skips ``__init__``; anything else goes the slow way."""
    if not changes.keys() <= _FREE_FIELDS:
        return dataclasses.replace(order, **changes)
    new = object.__new__(Order)
    set_ = object.__setattr__
    for name in _ORDER_FIELDS:
        set_(new, name, changes[name] if name in changes else getattr(order, name))
    return new


def validate_order_fields(
    order_id: str,
    quantity: float,
    order_type: OrderType,
    limit_price: float | None,
    stop_price: float | None,
    *,
    instrument: Instrument | None = None,
) -> None:
    """Refuse terms no venue could accept, naming the problem.

    With ``instrument``, the quantity must also be whole units where the instrument trades in
    whole units (shares and option contracts: every instrument fbterm knows today). Orders
    read back from the journal are checked without it: what was recorded stays readable.
    """
    where = f"order {order_id}" if order_id else "order"
    # bool is an int to Python, but True shares is a mistake, not an order for one share.
    if isinstance(quantity, bool) or not isinstance(quantity, int | float):
        raise OrderError(f"{where}: quantity must be a number, got {quantity!r}")
    if not math.isfinite(quantity) or quantity <= 0:
        raise OrderError(f"{where}: quantity must be > 0, got {quantity!r}")
    if instrument is not None and not float(quantity).is_integer():
        unit = "option contracts" if instrument.is_option else "shares"
        raise OrderError(
            f"{where}: {instrument.key} trades in whole {unit}; got a quantity of {quantity:g}"
        )
    for name, price in (("limit", limit_price), ("stop", stop_price)):
        if isinstance(price, bool):
            raise OrderError(f"{where}: {name} price must be a number, got {price!r}")
    if order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        if limit_price is None or not math.isfinite(limit_price) or limit_price <= 0:
            raise OrderError(
                f"{where}: {order_type.value} needs a limit price > 0, got {limit_price!r}"
            )
    elif limit_price is not None:
        raise OrderError(f"{where}: {order_type.value} takes no limit price")
    if order_type is OrderType.TRAIL:
        if stop_price is not None and (not math.isfinite(stop_price) or stop_price <= 0):
            raise OrderError(f"{where}: TRAIL level must be > 0, got {stop_price!r}")
    elif order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
        if stop_price is None or not math.isfinite(stop_price) or stop_price <= 0:
            raise OrderError(
                f"{where}: {order_type.value} needs a stop price > 0, got {stop_price!r}"
            )
    elif stop_price is not None:
        raise OrderError(f"{where}: {order_type.value} takes no stop price")
