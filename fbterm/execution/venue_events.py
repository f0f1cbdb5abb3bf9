"""How OrderManagement takes in what the venue says: status changes, fills, modify
acknowledgements, commission reports, messages; and how a fill folds into the positions.

A base class of :class:`fbterm.execution.orders.OrderManagement`, kept apart because it is one
job (the venue's side of the order lifecycle) and OrderManagement the other (the operator's and
strategies' side). It owns no state of its own: the attributes below are OrderManagement's.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from fbterm.execution.brokers.base import (
    BrokerEvent,
    BrokerMessage,
    CommissionEvent,
    ConnectionEvent,
    FillEvent,
    ModifyAckEvent,
    OrderStatusEvent,
)
from fbterm.execution.fill_log import FillLog
from fbterm.journal import Journal
from fbterm.model import Fill, Order, OrderStatus, Position


class VenueEvents:
    """The venue's side of OrderManagement (see the module docstring)."""

    journal: Journal | None
    clock: Callable[[], float]
    read_only: str | None
    keep_orders: int
    orders: dict[str, Order]
    open: dict[str, Order]
    fills: FillLog
    fill_counts: dict[str, int]
    fills_by_order: dict[str, list[Fill]]
    positions: dict[str, Position]
    strategy_positions: dict[tuple[str, str], Position]
    by_strategy: dict[str, dict[str, Position]]
    ack_latencies: deque[float]
    _history: dict[str, list[tuple[float, str, OrderStatus]]]
    _recent_fills: dict[str, Fill]
    _finished: deque[str]
    _sent_at: dict[str, float]

    if TYPE_CHECKING:  # defined by OrderManagement

        def _emit(self, kind: str, obj: object) -> None: ...
        def _store(self, order: Order, event: str) -> None: ...
        def _journal_order(self, kind: str, order: Order) -> None: ...
        def _trim_orders(self) -> None: ...
        def lookup(self, order_id: str) -> Order | None: ...

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
        if order is None or not order.is_live or order.status is OrderStatus.PENDING_CANCEL:
            return  # ended, or on its way out: new terms no longer matter
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
