"""What IB says, as fbterm's events: ib_async's order, fill and error events for one connection.

Order statuses and open orders move our tracked orders (:mod:`.tracking`) and become
:class:`OrderStatusEvent` and :class:`ModifyAckEvent`; executions and commission reports are
matched by execution id whatever order they arrive in; IB's error codes end orders with IB's
text, refuse cancels and modifications, and drive the connection's state machine
(:mod:`.connection`). After 10147/10148 IB's own book says what became of an order. Every event
goes out through ``emit`` (the adapter queues it on the engine's loop).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ib_async import IB
from ib_async import Fill as IBFill
from ib_async import Trade as IBTrade

from fbterm.config import IBConfig
from fbterm.execution.brokers.base import (
    BrokerError,
    BrokerEvent,
    BrokerMessage,
    CommissionEvent,
    ModifyAckEvent,
    OrderStatusEvent,
    VenueBook,
)
from fbterm.execution.brokers.ib.book import fill_event, note_fill, price_or_none
from fbterm.execution.brokers.ib.codes import (
    ENDED_STATUSES,
    LINK_LOST,
    LINK_RESTORED,
    LINK_RESTORED_DATA_LOST,
    ORDER_ENDING,
    describe_ib_error,
    ib_text,
    is_read_only,
)
from fbterm.execution.brokers.ib.connection import Link, reason
from fbterm.execution.brokers.ib.tracking import Registry, Tracked
from fbterm.model import OrderStatus


class IBEvents:
    """ib_async's events for one connection -> fbterm's events about our orders and the link.

    ``spawn`` runs a follow-up coroutine on the engine's loop, ``fetch_book`` asks IB for its
    book, ``ib`` and ``account`` are the live connection and its account.
    """

    def __init__(
        self,
        config: IBConfig,
        reg: Registry,
        link: Link,
        emit: Callable[[BrokerEvent], None],
        *,
        spawn: Callable[[Coroutine[Any, Any, None]], None],
        fetch_book: Callable[[], Awaitable[VenueBook]],
        ib: Callable[[], IB],
        account: Callable[[], str],
    ) -> None:
        self.config = config
        self.reg = reg
        self.link = link
        self._emit = emit
        self._spawn = spawn
        self._fetch_book = fetch_book
        self._ib = ib
        self._account = account

    def trade(self, tr: Tracked) -> IBTrade | None:
        """ib_async's trade for ``tr`` (None for an order of an earlier session)."""
        return self._ib().wrapper.trades.get((tr.client_id, tr.ib_order_id))

    def say(self, code: int, text: str, coid: str | None, level: str) -> None:
        """A venue message the operator must hear (an alert, not only a log line)."""
        self._emit(BrokerMessage(code, text, coid, level, time.time(), alert=True))

    def report(self, tr: Tracked, status: OrderStatus, reason: str = "", code: int = 0) -> None:
        if tr.status is status or tr.status.is_terminal:
            return
        tr.status = status
        self._emit(
            OrderStatusEvent(
                tr.client_order_id,
                status,
                reason,
                str(tr.ib_order_id),
                time.time(),
                str(tr.perm_id) if tr.perm_id else None,
                code,
            )
        )

    def report_ids(self, tr: Tracked) -> None:
        """The perm id arrived for an order whose status did not change: journal it."""
        self._emit(
            OrderStatusEvent(
                tr.client_order_id, tr.status, "", str(tr.ib_order_id), time.time(), str(tr.perm_id)
            )
        )

    def on_order_status(self, trade: IBTrade) -> None:
        o, st = trade.order, trade.orderStatus
        tr = self.reg.find(o.clientId, o.orderId, o.permId)
        if tr is None:
            self.on_foreign_status(trade)
            return
        new_perm = self.reg.set_perm(tr, o.permId)
        status = st.status
        if status in ("PreSubmitted", "Submitted"):
            if tr.status is OrderStatus.PENDING_SUBMIT:
                self.report(tr, OrderStatus.SUBMITTED)
            elif new_perm and not tr.status.is_terminal:
                self.report_ids(tr)
        elif status == "PendingCancel":
            self.report(tr, OrderStatus.PENDING_CANCEL)
        elif status in ENDED_STATUSES:
            entry = trade.log[-1] if trade.log else None
            code = entry.errorCode if entry is not None else 0
            text = ib_text(entry.message) if entry is not None and code else ""
            self.ended(tr, status, code, text)
        elif status == "Filled" and tr.filled >= tr.quantity - 1e-9:
            # Fills drive quantities and the FILLED state; only remember IB's word here.
            tr.status = OrderStatus.FILLED

    def on_foreign_status(self, trade: IBTrade) -> None:
        f = self.reg.foreign.get(trade.order.permId)
        if f is None or trade.orderStatus.status not in ENDED_STATUSES:
            return
        self._emit(
            OrderStatusEvent(
                f.client_order_id,
                OrderStatus.CANCELLED,
                f"cancelled at IB ({f.owner})",
                str(f.ib_order_id),
                time.time(),
                str(f.perm_id),
            )
        )

    def ended(self, tr: Tracked, ib_status: str, code: int, text: str) -> None:
        """IB says an order of ours is no longer working; ``code`` is the error behind it."""
        if code in (10147, 10148):
            # "Not found" / "cannot be cancelled": IB's answers say what became of it.
            self._spawn(self.settle(tr, code, text))
            return
        why = describe_ib_error(code, text)[1] if code else ""
        if code == 201 or ib_status == "Inactive":
            # A partly filled order cannot be "rejected": it was cancelled, with IB's reason.
            final = OrderStatus.REJECTED if tr.filled <= 0 else OrderStatus.CANCELLED
            self.report(tr, final, why or "order inactive at IB", code)
        else:
            default = "cancelled" if tr.cancel_requested else "cancelled by IB"
            self.report(tr, OrderStatus.CANCELLED, why or default, code)

    async def settle(self, tr: Tracked, code: int, text: str) -> None:
        """After 10147/10148: ask IB what became of ``tr`` and report exactly that."""
        why = describe_ib_error(code, text)[1]
        try:
            book = await self._fetch_book()
        except (TimeoutError, ConnectionError, BrokerError) as e:
            self.say(
                code, f"{why}; could not ask IB about it: {reason(e)}", tr.client_order_id, "error"
            )
            return
        for fe in book.fills:
            if fe.fill.client_order_id == tr.client_order_id:
                self._emit(fe)  # the order manager drops the ones it has
        working = [b for b in book.open_orders if b.client_order_id == tr.client_order_id]
        if working:
            tr.pending_modify = None
            if tr.status is OrderStatus.PENDING_CANCEL:
                back = OrderStatus.PARTIALLY_FILLED if tr.filled > 0 else OrderStatus.SUBMITTED
                self.report(tr, back, f"cancel refused: {why}", code)
            else:
                self.say(
                    code, f"{why}; the order is still working at IB", tr.client_order_id, "warning"
                )
            return
        done = [b for b in book.completed_orders if b.client_order_id == tr.client_order_id]
        if tr.filled >= tr.quantity - 1e-9 or (done and done[0].status is OrderStatus.FILLED):
            tr.status = OrderStatus.FILLED  # its fills, reported above, say the rest
            self.say(
                code,
                f"{why}; it had already filled at IB (fills recorded)",
                tr.client_order_id,
                "warning",
            )
            return
        ended = f"IB: {done[0].reason}" if done else "IB no longer has this order"
        final = (
            OrderStatus.REJECTED
            if tr.status is OrderStatus.PENDING_SUBMIT and tr.filled <= 0
            else OrderStatus.CANCELLED
        )
        self.report(tr, final, f"{why}; {ended}", code)

    def on_open_order(self, trade: IBTrade) -> None:
        tr = self.reg.find(trade.order.clientId, trade.order.orderId, trade.order.permId)
        if tr is None:
            return
        new_perm = self.reg.set_perm(tr, trade.order.permId)
        if new_perm and tr.status in (OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED):
            self.report_ids(tr)
        if tr.pending_modify is None:
            return
        want, o = tr.pending_modify, trade.order
        if (
            abs(float(o.totalQuantity) - want.quantity) > 1e-9
            or o.orderType != want.order_type.value
        ):
            return  # an echo of the old terms still in flight
        if (
            price_or_none(o.lmtPrice) != want.limit_price
            or price_or_none(o.auxPrice) != want.stop_price
        ):
            return
        tr.pending_modify = None
        tr.quantity = want.quantity
        self._emit(
            ModifyAckEvent(
                tr.client_order_id,
                want.quantity,
                want.order_type,
                want.limit_price,
                want.stop_price,
                time.time(),
            )
        )

    def on_live_fill(self, fill: IBFill) -> None:
        fe = fill_event(self.reg, fill, self._account())
        if fe is None or not note_fill(self.reg, fe):
            return
        tr = self.reg.by_coid.get(fe.fill.client_order_id)
        if tr is not None and tr.filled >= tr.quantity - 1e-9 and not tr.status.is_terminal:
            tr.status = OrderStatus.FILLED
        self._emit(fe)

    def on_commission(self, exec_id: str, commission: float) -> None:
        reg = self.reg
        reg.commissions[exec_id] = commission
        if exec_id in reg.seen_exec and exec_id not in reg.commission_sent:
            reg.commission_sent.add(exec_id)
            self._emit(CommissionEvent(exec_id, commission))

    def on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        level, message = describe_ib_error(code, text)
        tr = self.reg.by_key.get((self.config.client_id, req_id)) if req_id > 0 else None
        self._emit(
            BrokerMessage(code, message, tr.client_order_id if tr else None, level, time.time())
        )
        link = self.link
        if code == 326:
            link.refusal(code, text)
        elif code in LINK_LOST:
            link.lost(code, message)
        elif code == LINK_RESTORED_DATA_LOST:
            link.restored(code, message, data_lost=True)
            # Market data (the data source renews its own) and account updates are gone.
            self._spawn(self.resubscribe_account())
        elif code == LINK_RESTORED:
            link.restored(code, message, data_lost=False)
        elif is_read_only(code, text):
            link.read_only_detected(message)
            if tr is not None:
                self.refused(tr, message, code)
        elif code == 321 and tr is not None:
            self.refused(tr, message, code)
        elif tr is not None and code in ORDER_ENDING and self.trade(tr) is None:
            # An order of an earlier session ib_async does not know: it sent no status.
            self.ended(tr, "Cancelled", code, text)

    def refused(self, tr: Tracked, message: str, code: int) -> None:
        """IB refused a request about ``tr`` (321): a new order never worked; a cancel or a
        modification did not happen and the order keeps working."""
        if tr.status is OrderStatus.PENDING_SUBMIT:
            self.report(tr, OrderStatus.REJECTED, message, code)
        elif tr.status is OrderStatus.PENDING_CANCEL:
            back = OrderStatus.PARTIALLY_FILLED if tr.filled > 0 else OrderStatus.SUBMITTED
            tr.cancel_requested = False
            self.report(tr, back, f"cancel refused: {message}", code)
        tr.pending_modify = None

    async def resubscribe_account(self) -> None:
        ib, timeout = self._ib(), self.config.request_timeout
        try:
            await asyncio.wait_for(ib.reqAccountUpdatesAsync(self._account()), timeout)
            await asyncio.wait_for(ib.reqAccountSummaryAsync(), timeout)
        except (TimeoutError, ConnectionError) as e:
            self.say(0, f"IB account updates not renewed after 1101: {reason(e)}", None, "error")
