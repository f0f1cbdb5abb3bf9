"""OrderManagement (and, from :mod:`fbterm.execution.order_queue`, OrderQueue): the seed's order
lifecycle, journaled.

OrderManagement is the only place orders and fills change. For every change it (1) computes the
new immutable Order, which validates the transition, (2) writes it to the journal, and only then
(3) swaps it into memory and tells listeners. An illegal transition therefore raises before
anything is written, and a crash between (2) and (3) loses nothing: the journal is ahead of
memory, never behind.

Memory is bounded: positions are folded fill by fill (never rebuilt from a list), and only the
working orders, the most recent finished orders and the most recent fills stay in memory. The
journal keeps all of them, and answers for an order or fill that has left memory.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from fbterm.execution.brokers.base import (
    Broker,
    SimulatedVenue,
)
from fbterm.execution.fill_log import KEEP_FILLS, FillLog
from fbterm.execution.order_queue import OrderQueue, QueueFull
from fbterm.execution.venue_events import VenueEvents
from fbterm.journal import Journal
from fbterm.model import (
    Fill,
    IllegalTransition,
    Order,
    OrderError,
    OrderOptions,
    OrderStatus,
    OrderType,
    Position,
    Signal,
    TimeInForce,
)

RiskCheck = Callable[[Order], str | None]
Listener = Callable[[str, object], None]


@dataclass(frozen=True, slots=True)
class OrderReport:
    """``monitor_order``'s answer: the order as it stands, its fills, its history."""

    order: Order
    fills: tuple[Fill, ...]
    history: tuple[tuple[float, str, OrderStatus], ...]

    @property
    def status(self) -> OrderStatus:
        return self.order.status


def bracket_children(
    parent: Order, signal: Signal, next_id: Callable[[], str], now: float
) -> list[Order]:
    """The take-profit (limit) and stop-loss (stop) exits of a bracket entry: the opposite
    side, the entry's quantity, one OCA group with it, good till cancelled."""
    out: list[Order] = []
    for typ, price in ((OrderType.LIMIT, signal.take_profit), (OrderType.STOP, signal.stop_loss)):
        if price is None:
            continue
        out.append(
            Order(
                client_order_id=next_id(),
                instrument=parent.instrument,
                side=parent.side.opposite,
                quantity=parent.quantity,
                order_type=typ,
                limit_price=price if typ is OrderType.LIMIT else None,
                stop_price=price if typ is OrderType.STOP else None,
                tif=TimeInForce.GTC,
                strategy_id=parent.strategy_id,
                created_ts=now,
                updated_ts=now,
                reason="take-profit" if typ is OrderType.LIMIT else "stop-loss",
                parent_id=parent.client_order_id,
                oca_group=f"OCA-{parent.client_order_id}",
                options=OrderOptions(outside_rth=parent.options.outside_rth),
            )
        )
    return out


class UnknownOrder(KeyError):
    def __str__(self) -> str:
        return f"unknown order {self.args[0]!r}"


# How many finished orders stay in memory; the journal keeps everything.
KEEP_FINISHED_ORDERS = 5_000


class OrderManagement(VenueEvents):
    """Creates, monitors, cancels and modifies orders through a broker; owns positions."""

    def __init__(
        self,
        broker: Broker,
        journal: Journal | None = None,
        *,
        risk_check: RiskCheck | None = None,
        id_prefix: str = "FB",
        clock: Callable[[], float] = time.time,
        restore: bool = True,
        read_only: str | None = None,
        keep_orders: int = KEEP_FINISHED_ORDERS,
        keep_fills: int = KEEP_FILLS,
    ):
        self.broker = broker
        # An in-process venue answers inside execute_order and dies with us, so an order and
        # its acknowledgement may share one commit; asked once, not per order.
        self.venue_in_process = isinstance(broker, SimulatedVenue)
        self.journal = journal
        self.risk_check = risk_check
        self.clock = clock
        self.id_prefix = id_prefix
        # Why this session may not send, change or cancel orders (None: it may).
        self.read_only = read_only
        self.keep_orders = keep_orders
        # Working orders and the most recent finished ones; the journal has the rest.
        self.orders: dict[str, Order] = {}
        self.open: dict[str, Order] = {}
        self.orders_total = 0  # every order the journal holds, in memory or not
        self._finished: deque[str] = deque()  # finished order ids, oldest first
        self.fills = FillLog(keep_fills)
        self.fill_counts: dict[str, int] = {}  # fills per strategy, all of them
        self.fills_by_order: dict[str, list[Fill]] = {}
        self.positions: dict[str, Position] = {}
        self.strategy_positions: dict[tuple[str, str], Position] = {}
        # The same positions grouped by strategy: a strategy's P&L is read on every bar it
        # trades, and must not cost a scan of every strategy's book.
        self.by_strategy: dict[str, dict[str, Position]] = {}
        self._history: dict[str, list[tuple[float, str, OrderStatus]]] = {}
        # The recent fills by id (re-sent executions, late commissions); older ids are
        # answered by the journal, which refuses a fill id twice.
        self._recent_fills: dict[str, Fill] = {}
        self._restored: set[str] = set()  # orders read back from the journal at start
        self._listeners: list[Listener] = []
        self._seq = itertools.count(1)
        self.ack_latencies: deque[float] = deque(maxlen=5_000)  # seconds, create -> acknowledged
        self._sent_at: dict[str, float] = {}
        if journal is not None and restore:
            self._restore()
        broker.set_event_handler(self.on_broker_event)

    # -- listeners -----------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """``listener(kind, obj)``: kind is order / fill / commission / message / connection,
        venue-ended (an order the venue ended unasked or with an error) or adjustment (a
        booked position)."""
        self._listeners.append(listener)

    def _emit(self, kind: str, obj: object) -> None:
        for fn in self._listeners:
            fn(kind, obj)

    # -- journal replay ------------------------------------------------------------------
    def _restore(self) -> None:
        """Positions folded from every journaled fill; in memory only what is kept."""
        assert self.journal is not None
        n = 0
        prefix = f"{self.id_prefix}-"
        for o in self.journal.iter_last_orders():
            oid = o.client_order_id
            self._restored.add(oid)
            self.orders_total += 1
            self.orders[oid] = o
            if o.is_live:
                self.open[oid] = o
            else:
                self._finished.append(oid)
                self._trim_orders()
            if oid.startswith(prefix) and oid[len(prefix) :].isdigit():
                n = max(n, int(oid[len(prefix) :]))
        for f in self.journal.iter_fills():
            self._apply_fill_to_positions(f)
            self._remember_fill(f)
        # Ids only ever go up: a new order never reuses the id of one the journal holds.
        self._seq = itertools.count(n + 1)

    def next_id(self) -> str:
        return f"{self.id_prefix}-{next(self._seq):06d}"

    # -- the seed's methods --------------------------------------------------------------
    def create_order(self, signal: Signal) -> Order:
        """Turn a signal into an order, gate it through risk, journal it and send it.

        Returns the order as it stands after the broker's synchronous answer: REJECTED with a
        reason when the risk gate or the broker refuses it.
        """
        now = self.clock()
        oid = self.next_id()
        order = Order(
            client_order_id=oid,
            instrument=signal.instrument,
            side=signal.side,
            quantity=float(signal.quantity),
            order_type=signal.order_type,
            limit_price=signal.limit_price,
            stop_price=signal.stop_price,
            tif=signal.tif,
            strategy_id=signal.strategy_id,
            signal_price=signal.signal_price,
            created_ts=now,
            updated_ts=now,
            options=signal.options,
        )
        reason = self.read_only or (self.risk_check(order) if self.risk_check else None)
        if reason:
            rejected = order.transition(OrderStatus.REJECTED, ts=now, reason=reason)
            self._journal_order("rejected", rejected)
            self.orders_total += 1
            self._store(rejected, "risk-rejected")
            return rejected
        if self.journal is not None and self.venue_in_process:
            # An in-process venue answers inside execute_order, and dies with us: the order
            # and its acknowledgement commit together, one commit per order.
            with self.journal.batch():
                self._send(order)
        else:
            # A remote venue must never hold an order the journal does not know: "new"
            # commits before the order leaves the process.
            self._send(order)
        parent = self.orders[order.client_order_id]
        if signal.is_bracket and parent.is_live:
            for child in bracket_children(parent, signal, self.next_id, now):
                # The exits only ever close what the entry opened: the gate passed the entry.
                self._send(child)
        return self.orders[order.client_order_id]

    def children(self, parent_id: str) -> list[Order]:
        """A bracket's exit orders, take-profit first."""
        return [o for o in self.orders.values() if o.parent_id == parent_id]

    def _send(self, order: Order) -> None:
        self._journal_order("new", order)
        self.orders_total += 1
        self._store(order, "new")
        self._sent_at[order.client_order_id] = time.perf_counter()
        try:
            self.broker.execute_order(order)
        except Exception as e:  # the venue refused synchronously: the order must not dangle
            current = self.orders[order.client_order_id]
            if current.is_live:
                self._apply_status(current, OrderStatus.REJECTED, reason=f"broker: {e}")

    def monitor_order(self, order_id: str) -> OrderReport:
        order = self._get(order_id)
        if self.journal is None or (order_id in self.orders and order_id not in self._restored):
            return OrderReport(
                order=order,
                fills=tuple(self.fills_by_order.get(order_id, ())),
                history=tuple(self._history.get(order_id, ())),
            )
        # From before a restart or finished long ago: only the journal has its whole life
        # (and every change since, too); each event at the time the order itself records.
        return OrderReport(
            order=order,
            fills=tuple(self.journal.fills_of_order(order_id)),
            history=tuple(
                (o.updated_ts, kind, o.status)
                for _, kind, o in self.journal.order_history(order_id)
            ),
        )

    def cancel_order(self, order_id: str) -> Order:
        self._refuse_if_read_only("cancel", order_id)
        order = self._get(order_id)
        if order.status is OrderStatus.PENDING_CANCEL:
            return order
        pending = order.transition(OrderStatus.PENDING_CANCEL, ts=self.clock())
        self._journal_order("cancel-request", pending)
        self._store(pending, "cancel-request")
        try:
            self.broker.cancel_order(pending)
        except Exception as e:
            current = self.orders[order_id]
            if current.status is OrderStatus.PENDING_CANCEL:
                back = (
                    OrderStatus.PARTIALLY_FILLED
                    if current.filled_quantity
                    else OrderStatus.SUBMITTED
                )
                self._apply_status(current, back, reason=f"cancel refused: {e}")
            raise
        return self.orders[order_id]

    def modify_order(
        self,
        order_id: str,
        *,
        quantity: float | None = None,
        order_type: OrderType | None = None,
        limit_price: float | None = None,
        stop_price: float | None = None,
    ) -> Order:
        """Send new terms for a working order; they apply when the broker acknowledges them.

        Raises OrderError / IllegalTransition (nothing sent) when the terms are invalid, and
        OrderError with the risk rule when the modified order would break a limit.
        """
        self._refuse_if_read_only("modify", order_id)
        order = self._get(order_id)
        proposed = order.modified(
            quantity=quantity,
            order_type=order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            ts=self.clock(),
        )
        if self.risk_check:
            reason = self.risk_check(proposed)
            if reason:
                raise OrderError(f"order {order_id}: modification rejected: {reason}")
        self._journal_order("modify-request", order)
        self.broker.modify_order(proposed)
        return self.orders[order_id]

    def close_locally(self, order_id: str, status: OrderStatus, reason: str) -> Order:
        """Record a final status the venue cannot tell us (reconciliation after a restart: a
        DAY order from an earlier session, an order that never reached the venue)."""
        if not status.is_terminal:
            raise ValueError(f"close_locally needs a final status, got {status.value}")
        order = self._get(order_id)
        self._apply_status(order, status, reason=reason)
        return self.orders[order_id]

    def adopt_order(self, order: Order) -> Order:
        """Take in an order the venue works that this journal does not know (another client's,
        a manual one, or ours from another journal): journaled, shown, its fills attributed.

        It never passes the risk gate: it is already at the venue.
        """
        if self.lookup(order.client_order_id) is not None:
            raise ValueError(f"order {order.client_order_id} is already known")
        self._journal_order("adopted", order)
        self._store(order, "adopted")
        return order

    def record_adjustment(self, fill: Fill) -> bool:
        """Book a position the venue holds and the fills do not explain (it predates fbterm,
        or its executions are no longer reported): journaled as a fill of no order, so the
        position exists for risk, flatten and every restart. False if already booked."""
        if self.knows_fill(fill.fill_id):
            return False
        if self.journal is not None and not self.journal.record_fill(fill):
            return False
        self._remember_fill(fill)
        self._apply_fill_to_positions(fill)
        self._emit("adjustment", fill)
        return True

    # -- queries -------------------------------------------------------------------------
    @property
    def fills_total(self) -> int:
        """Every fill the journal holds (restored and new), in memory or not."""
        return self.fills.total

    def knows_fill(self, fill_id: str) -> bool:
        """Whether this execution is booked (in memory or only in the journal)."""
        if fill_id in self._recent_fills:
            return True
        return self.journal is not None and self.journal.has_fill(fill_id)

    def open_orders(self, strategy_id: str | None = None) -> list[Order]:
        if strategy_id is None:
            return list(self.open.values())
        return [o for o in self.open.values() if o.strategy_id == strategy_id]

    def position(self, key: str, strategy_id: str | None = None) -> float:
        pos = (
            self.strategy_positions.get((strategy_id, key))
            if strategy_id
            else self.positions.get(key)
        )
        return pos.quantity if pos else 0.0

    def _get(self, order_id: str) -> Order:
        order = self.lookup(order_id)
        if order is None:
            raise UnknownOrder(order_id)
        return order

    def lookup(self, order_id: str) -> Order | None:
        """An order by id: from memory, or the journal's last word on one that left memory."""
        order = self.orders.get(order_id)
        if order is None and self.journal is not None:
            order = self.journal.last_order(order_id)
        return order

    def _refuse_if_read_only(self, what: str, order_id: str) -> None:
        if self.read_only:
            raise OrderError(f"{what} {order_id} refused: {self.read_only}")

    # -- storage -------------------------------------------------------------------------
    def _journal_order(self, kind: str, order: Order) -> None:
        if self.journal is not None:
            self.journal.record_order(kind, order)

    def _store(self, order: Order, event: str) -> None:
        oid = order.client_order_id
        known = oid in self.orders
        self.orders[oid] = order
        if order.is_live:
            self.open[oid] = order
        else:
            if oid in self.open or not known:
                self._finished.append(oid)
            self.open.pop(oid, None)
            self._sent_at.pop(oid, None)
        self._history.setdefault(oid, []).append((order.updated_ts, event, order.status))
        self._trim_orders()
        self._emit("order", order)

    def _trim_orders(self) -> None:
        """Let the oldest finished orders go (the journal keeps them)."""
        finished = self._finished
        while len(finished) > self.keep_orders:
            oid = finished.popleft()
            o = self.orders.get(oid)
            if o is None or o.is_live:
                continue
            del self.orders[oid]
            self._history.pop(oid, None)
            self.fills_by_order.pop(oid, None)


__all__ = [
    "IllegalTransition",
    "OrderManagement",
    "OrderQueue",
    "OrderReport",
    "QueueFull",
    "UnknownOrder",
]
