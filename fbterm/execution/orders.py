"""OrderManagement and OrderQueue: the seed's order lifecycle, journaled.

OrderManagement is the only place orders and fills change. For every change it (1) computes the
new immutable Order, which validates the transition, (2) writes it to the journal, and only then
(3) swaps it into memory and tells listeners. An illegal transition therefore raises before
anything is written, and a crash between (2) and (3) loses nothing: the journal is ahead of
memory, never behind.
"""

from __future__ import annotations

import dataclasses
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fbterm.execution.brokers.base import (
    Broker,
    BrokerEvent,
    BrokerMessage,
    CommissionEvent,
    ConnectionEvent,
    FillEvent,
    ModifyAckEvent,
    OrderStatusEvent,
    SimulatedVenue,
)
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


class OrderManagement:
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
    ):
        self.broker = broker
        # An in-process venue answers inside execute_order and dies with us, so an order and
        # its acknowledgement may share one commit; asked once, not per order.
        self.venue_in_process = isinstance(broker, SimulatedVenue)
        self.journal = journal
        self.risk_check = risk_check
        self.clock = clock
        self.id_prefix = id_prefix
        self.orders: dict[str, Order] = {}
        self.open: dict[str, Order] = {}
        self.fills: list[Fill] = []
        self.fills_by_order: dict[str, list[Fill]] = {}
        self.positions: dict[str, Position] = {}
        self.strategy_positions: dict[tuple[str, str], Position] = {}
        # The same positions grouped by strategy: a strategy's P&L is read on every bar it
        # trades, and must not cost a scan of every strategy's book.
        self.by_strategy: dict[str, dict[str, Position]] = {}
        self._history: dict[str, list[tuple[float, str, OrderStatus]]] = {}
        self._fill_ids: set[str] = set()
        self._fill_index: dict[str, int] = {}  # fill id -> place in self.fills (commission reports)
        self._listeners: list[Listener] = []
        self._seq = itertools.count(1)
        self.ack_latencies: list[float] = []  # seconds, create -> acknowledged
        self._sent_at: dict[str, float] = {}
        if journal is not None and restore:
            self._restore()
        broker.set_event_handler(self.on_broker_event)

    # -- listeners -----------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> None:
        """``listener(kind, obj)`` with kind in order / fill / message / connection."""
        self._listeners.append(listener)

    def _emit(self, kind: str, obj: object) -> None:
        for fn in self._listeners:
            fn(kind, obj)

    # -- journal replay ------------------------------------------------------------------
    def _restore(self) -> None:
        assert self.journal is not None
        state = self.journal.load()
        self.orders = dict(state.orders)
        self.open = {k: o for k, o in self.orders.items() if o.is_live}
        for f in state.fills:
            self._apply_fill_to_positions(f)
            self._fill_index[f.fill_id] = len(self.fills)
            self.fills.append(f)
            self.fills_by_order.setdefault(f.client_order_id, []).append(f)
            self._fill_ids.add(f.fill_id)
        n = 0
        prefix = f"{self.id_prefix}-"
        for k in self.orders:
            if k.startswith(prefix) and k[len(prefix) :].isdigit():
                n = max(n, int(k[len(prefix) :]))
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
        reason = self.risk_check(order) if self.risk_check else None
        if reason:
            rejected = order.transition(OrderStatus.REJECTED, ts=now, reason=reason)
            self._journal_order("rejected", rejected)
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
        return OrderReport(
            order=order,
            fills=tuple(self.fills_by_order.get(order_id, ())),
            history=tuple(self._history.get(order_id, ())),
        )

    def cancel_order(self, order_id: str) -> Order:
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

    # -- queries -------------------------------------------------------------------------
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
        try:
            return self.orders[order_id]
        except KeyError:
            raise UnknownOrder(order_id) from None

    # -- broker events -------------------------------------------------------------------
    def on_broker_event(self, ev: BrokerEvent) -> None:
        if isinstance(ev, FillEvent):
            self._on_fill(ev.fill)
        elif isinstance(ev, OrderStatusEvent):
            self._on_status(ev)
        elif isinstance(ev, ModifyAckEvent):
            self._on_modify_ack(ev)
        elif isinstance(ev, CommissionEvent):
            self._on_commission(ev)
        elif isinstance(ev, BrokerMessage):
            self._emit("message", ev)
        elif isinstance(ev, ConnectionEvent):
            self._emit("connection", ev)

    def _on_status(self, ev: OrderStatusEvent) -> None:
        order = self.orders.get(ev.client_order_id)
        if order is None:
            self._emit(
                "message",
                BrokerMessage(
                    0,
                    f"status for unknown order {ev.client_order_id}: {ev.status}",
                    ev.client_order_id,
                    "warning",
                    ev.ts,
                ),
            )
            return
        if ev.status is order.status and ev.status is not OrderStatus.SUBMITTED:
            return
        if ev.status in (OrderStatus.FILLED, OrderStatus.PARTIALLY_FILLED):
            return  # quantities move with fills, not with status echoes
        if order.status.is_terminal:
            self._emit(
                "message",
                BrokerMessage(
                    0,
                    f"order {order.client_order_id} is {order.status.value}; "
                    f"ignored late {ev.status.value}",
                    order.client_order_id,
                    "info",
                    ev.ts,
                ),
            )
            return
        if (
            ev.status is OrderStatus.SUBMITTED
            and order.filled_quantity
            and order.status is not OrderStatus.PENDING_CANCEL
        ):
            return
        status: OrderStatus = ev.status
        if status is OrderStatus.SUBMITTED and order.filled_quantity:
            status = OrderStatus.PARTIALLY_FILLED
        changes: dict[str, object] = {}
        if ev.broker_order_id and ev.broker_order_id != order.broker_order_id:
            changes["broker_order_id"] = ev.broker_order_id
        if status is OrderStatus.SUBMITTED and order.submitted_ts is None:
            changes["submitted_ts"] = ev.ts or self.clock()
            t0 = self._sent_at.pop(order.client_order_id, None)
            if t0 is not None:
                self.ack_latencies.append(time.perf_counter() - t0)
        self._apply_status(order, status, reason=ev.reason, **changes)

    def _apply_status(
        self, order: Order, status: OrderStatus, reason: str = "", **changes: object
    ) -> None:
        if reason:
            changes["reason"] = reason
        new = order.transition(status, ts=self.clock(), **changes)
        self._journal_order(status.value, new)
        self._store(new, status.value)

    def _on_modify_ack(self, ev: ModifyAckEvent) -> None:
        order = self.orders.get(ev.client_order_id)
        if order is None or not order.is_live:
            return
        new = order.modified(
            quantity=ev.quantity,
            order_type=ev.order_type,
            limit_price=ev.limit_price,
            stop_price=ev.stop_price,
            ts=ev.ts or self.clock(),
        )
        self._journal_order("modified", new)
        self._store(new, "modified")

    def _on_fill(self, fill: Fill) -> None:
        if fill.fill_id in self._fill_ids:
            return  # the same execution reported again (reconnect re-sync)
        order = self.orders.get(fill.client_order_id)
        if order is not None and order.strategy_id != fill.strategy_id:
            # Attribution follows our order, whatever the venue echoed back.
            fill = Fill(
                fill.fill_id,
                fill.client_order_id,
                fill.instrument,
                fill.side,
                fill.quantity,
                fill.price,
                fill.commission,
                fill.ts,
                order.strategy_id,
            )
        new_order = None
        if order is None:
            self._emit(
                "message",
                BrokerMessage(
                    0,
                    f"fill {fill.fill_id} for unknown order {fill.client_order_id}: {fill.side.value} "
                    f"{fill.quantity:g} {fill.instrument.key} @ {fill.price:g} recorded; positions follow the venue",
                    fill.client_order_id,
                    "error",
                    fill.ts,
                ),
            )
        elif order.status.is_terminal:
            # A fill after cancel/reject: the venue is the truth; record it, keep the status.
            self._emit(
                "message",
                BrokerMessage(
                    0,
                    f"order {order.client_order_id} is {order.status.value} but the venue reports a fill of "
                    f"{fill.quantity:g} @ {fill.price:g}; recorded",
                    order.client_order_id,
                    "warning",
                    fill.ts,
                ),
            )
        else:
            if fill.quantity > order.remaining + 1e-9:
                # An overfill is the venue's word against ours: keep the fill (positions must match
                # the venue) and say so loudly, never drop it.
                self._emit(
                    "message",
                    BrokerMessage(
                        0,
                        f"order {order.client_order_id}: venue filled {fill.quantity:g} with only "
                        f"{order.remaining:g} remaining; recorded as filled",
                        order.client_order_id,
                        "error",
                        fill.ts,
                    ),
                )
                order = dataclasses.replace(order, quantity=order.filled_quantity + fill.quantity)
            new_order = order.with_fill(fill.quantity, fill.price, ts=fill.ts)
        if self.journal is not None:
            with self.journal.batch():
                if not self.journal.record_fill(fill):
                    self._fill_ids.add(fill.fill_id)
                    return
                if new_order is not None:
                    self.journal.record_order("fill", new_order)
        self._fill_ids.add(fill.fill_id)
        self._fill_index[fill.fill_id] = len(self.fills)
        self.fills.append(fill)
        self.fills_by_order.setdefault(fill.client_order_id, []).append(fill)
        self._apply_fill_to_positions(fill)
        if new_order is not None:
            if order is not None and order.submitted_ts is None:
                t0 = self._sent_at.pop(order.client_order_id, None)
                if t0 is not None:
                    self.ack_latencies.append(time.perf_counter() - t0)
            self._store(new_order, "fill")
        self._emit("fill", fill)

    def _on_commission(self, ev: CommissionEvent) -> None:
        if self.journal is not None:
            updated = self.journal.update_fill_commission(ev.fill_id, ev.commission)
            if updated is None:
                return
        i = self._fill_index.get(ev.fill_id)
        if i is None:
            return
        f = self.fills[i]
        delta = ev.commission - f.commission
        f = self.fills[i] = dataclasses.replace(f, commission=ev.commission)
        key = f.instrument.key

        def charged(pos: Position) -> Position:
            return dataclasses.replace(
                pos, realized_pnl=pos.realized_pnl - delta, commissions=pos.commissions + delta
            )

        if key in self.positions:
            self.positions[key] = charged(self.positions[key])
        skey = (f.strategy_id, key)
        if skey in self.strategy_positions:
            spos = self.strategy_positions[skey] = charged(self.strategy_positions[skey])
            self.by_strategy.setdefault(f.strategy_id, {})[key] = spos
        self._emit("commission", f)

    def _apply_fill_to_positions(self, fill: Fill) -> None:
        key = fill.instrument.key
        pos = self.positions.get(key) or Position(fill.instrument)
        self.positions[key] = pos.apply_fill(fill)
        skey = (fill.strategy_id, key)
        spos = self.strategy_positions.get(skey) or Position(
            fill.instrument, strategy_id=fill.strategy_id
        )
        new = self.strategy_positions[skey] = spos.apply_fill(fill)
        self.by_strategy.setdefault(fill.strategy_id, {})[key] = new

    # -- storage -------------------------------------------------------------------------
    def _journal_order(self, kind: str, order: Order) -> None:
        if self.journal is not None:
            self.journal.record_order(kind, order)

    def _store(self, order: Order, event: str) -> None:
        oid = order.client_order_id
        self.orders[oid] = order
        if order.is_live:
            self.open[oid] = order
        else:
            self.open.pop(oid, None)
            self._sent_at.pop(oid, None)
        self._history.setdefault(oid, []).append((order.updated_ts, event, order.status))
        self._emit("order", order)


class QueueFull(RuntimeError):
    """The order queue is at capacity: the order was NOT queued."""


@dataclass(frozen=True, slots=True)
class QueuedOrder:
    signal: Signal
    enqueued_ts: float = field(default_factory=time.time)


class OrderQueue:
    """A bounded, thread-safe FIFO of order intents for batch submission.

    A full queue raises :class:`QueueFull` to the caller; nothing is ever dropped silently.
    """

    def __init__(self, maxsize: int = 10_000):
        if maxsize <= 0:
            raise ValueError(f"OrderQueue maxsize must be > 0, got {maxsize}")
        self.maxsize = maxsize
        self._q: queue.Queue[QueuedOrder] = queue.Queue(maxsize)
        self._lock = threading.Lock()

    def enqueue_order(
        self, signal: Signal, *, block: bool = False, timeout: float | None = None
    ) -> None:
        try:
            self._q.put(QueuedOrder(signal), block=block, timeout=timeout)
        except queue.Full:
            raise QueueFull(
                f"order queue full ({self.maxsize} waiting): {signal.side.value} {signal.quantity:g} "
                f"{signal.instrument.key} for {signal.strategy_id} was not queued"
            ) from None

    def dequeue_order(self, *, block: bool = False, timeout: float | None = None) -> Signal | None:
        """The oldest queued signal, or None when the queue is empty."""
        try:
            return self._q.get(block=block, timeout=timeout).signal
        except queue.Empty:
            return None

    def dequeue_batch(self, max_items: int = 1000) -> list[Signal]:
        out: list[Signal] = []
        with self._lock:
            while len(out) < max_items:
                try:
                    out.append(self._q.get_nowait().signal)
                except queue.Empty:
                    break
        return out

    def __len__(self) -> int:
        return self._q.qsize()

    def submit_all(self, oms: OrderManagement, max_items: int = 1000) -> list[Order]:
        """Dequeue up to ``max_items`` and create them, in FIFO order.

        With an in-process venue the whole batch is journaled in one transaction; a remote
        venue's orders each commit before they leave the process, batch or not.
        """
        batch = self.dequeue_batch(max_items)
        if not batch:
            return []
        if oms.journal is None or not oms.venue_in_process:
            return [oms.create_order(s) for s in batch]
        with oms.journal.batch():
            return [oms.create_order(s) for s in batch]


__all__ = [
    "IllegalTransition",
    "OrderManagement",
    "OrderQueue",
    "OrderReport",
    "QueueFull",
    "UnknownOrder",
]
