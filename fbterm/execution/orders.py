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

import dataclasses
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

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
from fbterm.execution.fill_log import KEEP_FILLS, FillLog
from fbterm.execution.order_queue import OrderQueue, QueueFull
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

    # -- broker events -------------------------------------------------------------------
    def on_broker_event(self, ev: BrokerEvent) -> None:
        if isinstance(ev, FillEvent):
            self._on_fill(ev.fill, _venue_ids_of(ev))
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
        order = self.lookup(ev.client_order_id)
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
        ids = _venue_ids(order, ev.broker_order_id, ev.perm_id)
        if (ev.status is order.status and ev.status is not OrderStatus.SUBMITTED) or ev.status in (
            OrderStatus.FILLED,
            OrderStatus.PARTIALLY_FILLED,
        ):
            # Quantities move with fills, not with status echoes; the venue's ids are news.
            if ids:
                self._record_ids(order, ids)
            return
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
            if ids:
                self._record_ids(order, ids)
            return
        status: OrderStatus = ev.status
        if status is OrderStatus.SUBMITTED and order.filled_quantity:
            status = OrderStatus.PARTIALLY_FILLED
        changes: dict[str, object] = dict(ids)
        if status is OrderStatus.SUBMITTED and order.submitted_ts is None:
            changes["submitted_ts"] = ev.ts or self.clock()
            t0 = self._sent_at.pop(order.client_order_id, None)
            if t0 is not None:
                self.ack_latencies.append(time.perf_counter() - t0)
        # The venue ended a working order on its own, or our cancel ended in a venue error
        # (IB 10147: not found): the operator must hear of it.
        ended = status is OrderStatus.CANCELLED and (
            order.status is not OrderStatus.PENDING_CANCEL or ev.code not in (0, 202)
        )
        self._apply_status(order, status, reason=ev.reason, **changes)
        if ended:
            self._emit("venue-ended", self.orders[order.client_order_id])

    def _record_ids(self, order: Order, ids: dict[str, str]) -> None:
        new = dataclasses.replace(order, **ids)  # type: ignore[arg-type]  # str fields only
        self._journal_order("venue-ids", new)
        self._store(new, "venue-ids")

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

    def _on_fill(self, fill: Fill, ids: dict[str, str] | None = None) -> None:
        if fill.fill_id in self._recent_fills:
            return  # the same execution reported again (reconnect re-sync)
        if self.journal is not None and self.journal.has_fill(fill.fill_id):
            return  # ... of a fill that has left memory
        order = self.lookup(fill.client_order_id)
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
            # An execution can overtake its order's acknowledgement: it names the ids then.
            known = _venue_ids(
                new_order, (ids or {}).get("broker_order_id"), (ids or {}).get("broker_perm_id")
            )
            if known:
                new_order = dataclasses.replace(new_order, **known)  # type: ignore[arg-type]  # str fields only
        if self.journal is not None:
            with self.journal.batch():
                if not self.journal.record_fill(fill):
                    return
                if new_order is not None:
                    self.journal.record_order("fill", new_order)
        self._remember_fill(fill)
        self._apply_fill_to_positions(fill)
        if new_order is not None:
            if order is not None and order.submitted_ts is None:
                t0 = self._sent_at.pop(order.client_order_id, None)
                if t0 is not None:
                    self.ack_latencies.append(time.perf_counter() - t0)
            self._store(new_order, "fill")
        self._emit("fill", fill)

    def _on_commission(self, ev: CommissionEvent) -> None:
        f = self._recent_fills.get(ev.fill_id)
        if f is None and self.journal is not None:
            f = self.journal.fill(ev.fill_id)
        if f is None:
            return
        if self.journal is not None:
            self.journal.update_fill_commission(ev.fill_id, ev.commission)
        delta = ev.commission - f.commission
        new = dataclasses.replace(f, commission=ev.commission)
        if ev.fill_id in self._recent_fills:
            self._recent_fills[ev.fill_id] = new
            self.fills.replace(f, new)
            by_order = self.fills_by_order.get(f.client_order_id, [])
            for i, g in enumerate(by_order):
                if g.fill_id == f.fill_id:
                    by_order[i] = new
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
        self._emit("commission", new)

    def _remember_fill(self, fill: Fill) -> None:
        log = self.fills
        if len(log) == log.keep:
            self._recent_fills.pop(log[0].fill_id, None)
        log.append(fill)
        self._recent_fills[fill.fill_id] = fill
        self.fill_counts[fill.strategy_id] = self.fill_counts.get(fill.strategy_id, 0) + 1
        if fill.client_order_id in self.orders:
            self.fills_by_order.setdefault(fill.client_order_id, []).append(fill)

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


def _venue_ids(order: Order, broker_order_id: str | None, perm_id: str | None) -> dict[str, str]:
    """The venue's ids for ``order`` that it does not carry yet."""
    out: dict[str, str] = {}
    if broker_order_id and broker_order_id != order.broker_order_id:
        out["broker_order_id"] = broker_order_id
    if perm_id and perm_id != order.broker_perm_id:
        out["broker_perm_id"] = perm_id
    return out


def _venue_ids_of(ev: FillEvent) -> dict[str, str]:
    out: dict[str, str] = {}
    if ev.broker_order_id:
        out["broker_order_id"] = ev.broker_order_id
    if ev.perm_id:
        out["broker_perm_id"] = ev.perm_id
    return out


__all__ = [
    "IllegalTransition",
    "OrderManagement",
    "OrderQueue",
    "OrderReport",
    "QueueFull",
    "UnknownOrder",
]
