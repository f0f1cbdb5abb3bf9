"""The paper venue's working orders, and the order types beyond the fill rule.

:class:`WorkingOrders` is the book: the orders working at the venue by id and by underlying,
the value each holds back from buying power (kept incrementally), and bracket exits held until
their parent fills. What a fill or an update does to the book besides the fill itself lives
here too: a filled entry releases its exits, a fill in an OCA group reduces or cancels the
group's other orders, a trailing stop ratchets, an IOC remainder is cancelled, a GTD order
expires. The fill itself is :mod:`.fills`' rule, applied by the venue (:mod:`.paper`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from fbterm.execution.brokers.base import (
    BrokerOrder,
    EventHandler,
    ModifyAckEvent,
    OrderStatusEvent,
)
from fbterm.execution.brokers.fills import MarketUpdate, oca_after_fill, oca_rank, trail_level
from fbterm.model import Fill, Instrument, Order, OrderStatus, OrderType, Side, TimeInForce


class WorkingOrders:
    """The venue's book of working orders. ``emit`` sends the venue's events, ``mark`` prices
    an instrument (a reserve for an order without a price), ``last`` is the last update per
    instrument (a trailing stop's first level)."""

    def __init__(
        self,
        emit: EventHandler,
        clock: Callable[[], float],
        mark: Callable[[Instrument], float | None],
        last: Mapping[str, MarketUpdate],
    ) -> None:
        self._emit = emit
        self._clock = clock
        self._mark = mark
        self._last = last
        self.orders: dict[str, Order] = {}
        self.by_underlying: dict[str, set[str]] = {}
        # Value each working order holds back from buying power, kept incrementally so a book
        # of thousands of resting orders costs O(1) per new order.
        self._reserved: dict[str, float] = {}
        self.reserved_total = 0.0
        # Bracket children waiting for their parent to fill (parent id -> children).
        self.held: dict[str, list[Order]] = {}
        # The trailing level each trailing stop's owner was last told of.
        self._told: dict[str, float] = {}

    # -- the book ------------------------------------------------------------------------
    def put(self, order: Order) -> None:
        oid = order.client_order_id
        self.orders[oid] = order
        self.by_underlying.setdefault(order.instrument.underlying, set()).add(oid)
        px = order.reference_price() or self._mark(order.instrument) or 0.0
        value = order.remaining * px * order.multiplier
        self.reserved_total += value - self._reserved.get(oid, 0.0)
        self._reserved[oid] = value

    def drop(self, oid: str) -> Order | None:
        order = self.orders.pop(oid, None)
        self._told.pop(oid, None)
        if order is not None:
            self.by_underlying.get(order.instrument.underlying, set()).discard(oid)
        self.reserved_total -= self._reserved.pop(oid, 0.0)
        if not self.orders:
            self.reserved_total = 0.0  # no drift from float sums when the book empties
        return order

    def hold(self, parent_id: str, child: Order) -> None:
        """A bracket exit waits for its parent to fill."""
        self.held.setdefault(parent_id, []).append(child)

    def unhold(self, oid: str) -> bool:
        for parent, children in self.held.items():
            for c in children:
                if c.client_order_id == oid:
                    children.remove(c)
                    if not children:
                        del self.held[parent]
                    return True
        return False

    def close(self, oid: str, status: OrderStatus, reason: str, ts: float | None = None) -> None:
        self._emit(OrderStatusEvent(oid, status, reason, ts=self._clock() if ts is None else ts))

    def cancel_children(self, parent_id: str) -> None:
        for child in self.held.pop(parent_id, []):
            self.close(child.client_order_id, OrderStatus.CANCELLED, f"parent {parent_id} ended")

    def match_rank(self, oid: str) -> int:
        o = self.orders.get(oid)
        return 1 if o is None else oca_rank(o)

    def open_orders(self) -> list[BrokerOrder]:
        return [
            BrokerOrder(
                client_order_id=o.client_order_id,
                broker_order_id=o.broker_order_id or "",
                instrument=o.instrument,
                side=o.side.value,
                quantity=o.quantity,
                filled=o.filled_quantity,
                order_type=o.order_type,
                limit_price=o.limit_price,
                stop_price=o.stop_price,
                status=o.status,
                strategy_id=o.strategy_id,
            )
            for o in self.orders.values()
        ]

    def restore(self, open_orders: Iterable[Order]) -> None:
        """The journal's working orders back in the book (a restart)."""
        orders = list(open_orders)
        working = {o.client_order_id for o in orders if o.filled_quantity < o.quantity}
        for o in orders:
            if o.status is OrderStatus.PENDING_SUBMIT:
                continue
            if o.parent_id is not None and o.parent_id in working:
                self.hold(o.parent_id, o)
                continue
            live = (
                o
                if o.status is not OrderStatus.PENDING_CANCEL
                else o.transition(
                    OrderStatus.PARTIALLY_FILLED if o.filled_quantity else OrderStatus.SUBMITTED
                )
            )
            self.put(live)

    # -- order types beyond the fill rule --------------------------------------------------
    def armed(self, order: Order) -> Order:
        """A trailing stop takes its first level from the last price known, if any."""
        if order.order_type is not OrderType.TRAIL or order.stop_price is not None:
            return order
        u = self._last.get(order.instrument.key)
        return self._trailed(order, u) if u is not None else order

    def _trailed(self, order: Order, u: MarketUpdate) -> Order:
        o = order.options
        level = trail_level(
            order.side is Side.BUY,
            order.stop_price,
            u.high,
            u.low,
            o.trail_amount,
            o.trail_percent,
        )
        if level == order.stop_price:
            return order
        return dataclasses.replace(order, stop_price=level)

    def after_update(self, order: Order, u: MarketUpdate) -> None:
        """What an update does to a working order besides filling it: a trailing stop
        ratchets, an IOC order's unfilled rest is cancelled."""
        oid = order.client_order_id
        current = self.orders.get(oid)
        if current is None:
            return
        if current.tif is TimeInForce.IOC:
            self.drop(oid)
            self.close(oid, OrderStatus.CANCELLED, "IOC: unfilled remainder cancelled", u.ts)
            self.cancel_children(oid)
        elif current.order_type is OrderType.TRAIL:
            trailed = self._trailed(current, u)
            if trailed is not current:
                self.put(trailed)
            self._tell_level(trailed, self._clock())

    def _tell_level(self, order: Order, ts: float) -> None:
        """Tell the order's owner where a trailing stop stands, once it has moved a tick since
        last told: the owner journals it, so the level is shown (the console, ``fbterm
        orders``) and a restart resumes from it instead of re-arming from the price then."""
        level, oid = order.stop_price, order.client_order_id
        told = self._told.get(oid)
        if level is None or (told is not None and abs(level - told) < order.instrument.tick_size):
            return
        self._told[oid] = level
        self._emit(
            ModifyAckEvent(oid, order.quantity, order.order_type, order.limit_price, level, ts)
        )

    def expired(self, order: Order, ts: float) -> bool:
        good_till = order.options.good_till
        if order.tif is not TimeInForce.GTD or good_till is None or ts < good_till:
            return False
        self.drop(order.client_order_id)
        self.close(order.client_order_id, OrderStatus.CANCELLED, "GTD: expired", ts)
        self.cancel_children(order.client_order_id)
        return True

    def after_fill(self, order: Order, fill: Fill) -> None:
        """Brackets: a filled entry releases its exits; a fill in an OCA group reduces the
        group's other orders by as much (and cancels those it leaves with nothing)."""
        oid = order.client_order_id
        if oid not in self.orders:  # completely filled
            for child in self.held.pop(oid, []):
                self.put(self.armed(child))
        if not order.oca_group:
            return
        for other in list(self.orders.values()) + [c for cs in self.held.values() for c in cs]:
            if other.oca_group != order.oca_group or other.client_order_id == oid:
                continue
            reduced = oca_after_fill(other, fill.quantity)
            if reduced is None:
                if self.drop(other.client_order_id) is None:
                    self.unhold(other.client_order_id)
                self.close(
                    other.client_order_id,
                    OrderStatus.CANCELLED,
                    f"OCA: {oid} filled",
                    fill.ts,
                )
            else:
                if other.client_order_id in self.orders:
                    self.put(reduced)
                else:
                    self.unhold(other.client_order_id)
                    self.hold(other.parent_id or "", reduced)
                self._emit(
                    ModifyAckEvent(
                        other.client_order_id,
                        reduced.quantity,
                        other.order_type,
                        other.limit_price,
                        other.stop_price,
                        ts=fill.ts,
                    )
                )
