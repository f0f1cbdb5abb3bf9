"""``BrokerIntegration``: Interactive Brokers behind the broker port, on ib_async.

Everything here lives on the engine thread's event loop: the ``IB`` object is created in
:meth:`BrokerIntegration.start`, only its non-blocking calls and ``*Async`` coroutines are used,
and every fbterm event is handed to the engine's handler on that same loop (queued with
``call_soon`` so a handler never re-enters the broker call that caused it).

What this adapter adds to ib_async:

* our ids on the wire (``orderRef``) and IB's ids in the journal: the IB order id as soon as
  an order is sent, the perm id once IB gives it, both on every fill, even one that overtakes
  its order's acknowledgement;
* IB order ids that never go backwards (the journal's highest id is a floor);
* contracts qualified (contract id, primary exchange) before an order goes out;
* every IB code that ends an order mapped to a final status with IB's text (201 at any stage,
  202, 321 read-only, 10147/10148 checked against IB's own answers);
* executions and commission reports matched by execution id whatever order they arrive in;
* the connection state machine (:mod:`.connection`) and the venue's book from IB's answers
  (:mod:`.book`), which the engine reconciles against.

This module is the port: connecting, and fbterm's orders translated into IB's and sent, changed
or cancelled. What IB says back (statuses, fills, commissions, error codes) becomes fbterm's
events in :mod:`.events`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from ib_async import IB
from ib_async.order import Order as IBOrder

from fbterm.config import IBConfig
from fbterm.execution.brokers.base import (
    BrokerError,
    BrokerEvent,
    BrokerOrder,
    BrokerPosition,
    ConnectionState,
    ContractStore,
    EventHandler,
    OrderStatusEvent,
    VenueBook,
)
from fbterm.execution.brokers.ib import hooks, queries
from fbterm.execution.brokers.ib.book import read_book
from fbterm.execution.brokers.ib.connection import Link, reason
from fbterm.execution.brokers.ib.contracts import ContractBook, to_ib_contract
from fbterm.execution.brokers.ib.events import IBEvents
from fbterm.execution.brokers.ib.orders import apply_order_terms, what_if
from fbterm.execution.brokers.ib.tracking import (
    Foreign,
    Registry,
    Tracked,
    make_order_ref,
)
from fbterm.model import AccountDetails, Instrument, MarginImpact, Order, OrderStatus

# ib_async logs every failure it raises; with no logging configured Python would print those
# to stderr next to our own one-line message. A NullHandler stops that fallback and still lets
# the records reach the application's handlers when it configures logging.
logging.getLogger("ib_async").addHandler(logging.NullHandler())


class BrokerIntegration:
    """The Interactive Brokers venue (TWS or IB Gateway) behind fbterm's broker port.

    Construct it anywhere; call :meth:`start` on the engine thread's running loop. After every
    (re)connect it is SYNCING until :meth:`end_sync` (the engine reconciles first; alone, call
    :meth:`resync`). ``contracts`` keeps qualified contracts across sessions (the journal).
    """

    name = "ib"

    def __init__(
        self,
        config: IBConfig | None = None,
        *,
        min_order_id: int = 0,
        throttle: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        contracts: ContractStore | None = None,
    ) -> None:
        self.config = config or IBConfig()
        self._min_order_id = int(min_order_id)
        self._throttle = throttle
        self._handler: EventHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._highest_order_id = 0
        self.link = Link(self.config, self._emit, self._prepare, sleep)
        self.reg = Registry(self.config.client_id)
        self.contracts = ContractBook(contracts)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.last_book: VenueBook | None = None
        self.events = IBEvents(
            self.config,
            self.reg,
            self.link,
            self._emit,
            spawn=self._spawn,
            fetch_book=self.fetch_book,
            ib=lambda: self.ib,
            account=lambda: self.account,
        )

    # -- port basics ------------------------------------------------------------------------
    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    @property
    def connection_state(self) -> ConnectionState:
        return self.link.state

    @property
    def ib(self) -> IB:
        """The live ib_async connection (for the IB data source sharing it). Loop thread only."""
        if self.link.ib is None:
            raise BrokerError("IB broker not started")
        return self.link.ib

    @property
    def account(self) -> str:
        return self.link.account

    @property
    def reconnects(self) -> int:
        return self.link.reconnects

    @property
    def highest_order_id(self) -> int:
        """The highest IB order id used so far: persist it and pass it back as ``min_order_id``."""
        return max(self._highest_order_id, self._min_order_id - 1)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        if self.link.ib is None:
            self.link.ib = IB()
            self._wire(self.link.ib)
        await self.link.open()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.link.close()

    # -- the venue's book (RemoteVenue) -------------------------------------------------------
    async def fetch_book(self) -> VenueBook:
        ib = self.ib
        if not ib.isConnected():
            raise BrokerError(f"not connected to IB ({self.link.state.value})")
        unsent = frozenset(c for c, tr in self.reg.by_coid.items() if not tr.sent)
        book = await read_book(ib, self.reg, self.account, self.config.request_timeout, unsent)
        self.last_book = book
        return book

    def end_sync(self) -> None:
        self.link.end_sync()

    async def resync(self) -> VenueBook:
        """Fetch the book and end the sync (for use without the engine, which reconciles)."""
        book = await self.fetch_book()
        self.end_sync()
        return book

    async def qualify(self, instruments: Sequence[Instrument]) -> list[str]:
        return await self.contracts.qualify(self.ib, instruments, self.config.request_timeout)

    # -- wiring -------------------------------------------------------------------------------
    def _wire(self, ib: IB) -> None:
        ev = self.events
        ib.orderStatusEvent += ev.on_order_status
        ib.openOrderEvent += ev.on_open_order
        ib.errorEvent += ev.on_error
        ib.disconnectedEvent += self.link.on_disconnected
        hooks.listen_below(ib, ev.on_live_fill, ev.on_commission, self.reg.completed_why)

    def _prepare(self, ib: IB) -> None:
        # A restarted gateway may hand out ids we already used: never go below our floor.
        ib.client.updateReqId(max(self._min_order_id, self._highest_order_id + 1))  # type: ignore[no-untyped-call]  # ib_async leaves it unannotated
        ib.client.MaxRequests = int(self.config.max_messages_per_second) if self._throttle else 0
        ib.client.RequestsInterval = 1

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- orders -------------------------------------------------------------------------------
    def _check_can_trade(self, what: str) -> IB:
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise BrokerError(f"{what}: call the IB broker from the engine thread only")
        return self.link.check_can_trade(what)

    def execute_order(self, order: Order) -> None:
        ib = self._check_can_trade(f"order {order.client_order_id}")
        if order.client_order_id in self.reg.by_coid:
            raise BrokerError(f"order {order.client_order_id} was already sent to IB")
        oid = max(ib.client.getReqId(), self._min_order_id, self._highest_order_id + 1)
        ib.client.updateReqId(oid + 1)  # type: ignore[no-untyped-call]  # unannotated in ib_async
        self._highest_order_id = oid
        ib_order = self._ib_order(order)
        ib_order.orderId = oid
        tr = self.reg.add(
            Tracked(
                order.client_order_id,
                oid,
                self.config.client_id,
                order.strategy_id,
                order.instrument,
                order.side,
                order.quantity,
            )
        )
        # The IB order id goes to the journal now, before IB has said anything.
        self._emit(
            OrderStatusEvent(
                tr.client_order_id, OrderStatus.PENDING_SUBMIT, "", str(oid), time.time()
            )
        )
        qualified = self.contracts.get(order.instrument)
        if qualified is not None:
            tr.sent = True
            ib.placeOrder(to_ib_contract(order.instrument, qualified), ib_order)
        else:
            self._spawn(self._qualify_then_place(tr, ib_order))

    async def _qualify_then_place(self, tr: Tracked, ib_order: IBOrder) -> None:
        try:
            problems = await self.qualify([tr.instrument])
        except (TimeoutError, ConnectionError, BrokerError) as e:
            problems = [f"{tr.instrument.key}: contract not qualified ({reason(e)})"]
        qualified = self.contracts.get(tr.instrument)
        if problems or qualified is None:
            self.events.report(
                tr,
                OrderStatus.REJECTED,
                f"{problems[0] if problems else 'not qualified'}; not sent",
            )
            return
        if self.link.state is not ConnectionState.CONNECTED:
            self.events.report(
                tr,
                OrderStatus.REJECTED,
                f"IB {self.link.state.value} before the order went out; not sent",
            )
            return
        tr.sent = True
        self.ib.placeOrder(to_ib_contract(tr.instrument, qualified), ib_order)

    async def what_if(self, order: Order) -> MarginImpact:
        """IB's margin and commission preview for ``order`` (nothing is placed)."""
        what = f"what-if of {order.client_order_id}"
        ib = self._check_can_trade(what)
        problems = await self.qualify([order.instrument])
        if problems:
            raise BrokerError(f"{what}: {problems[0]}")
        contract = to_ib_contract(order.instrument, self.contracts.get(order.instrument))
        return await what_if(ib, contract, self._ib_order(order), self.config.request_timeout, what)

    def cancel_order(self, order: Order) -> None:
        coid = order.client_order_id
        foreign = self._foreign(order)
        if foreign is not None:
            self._cancel_foreign(foreign)
            return
        ib = self._check_can_trade(f"cancel of {coid}")
        tr = self._tracked(order)
        if tr.client_id != self.config.client_id:
            raise BrokerError(
                f"order {coid} was placed with client id {tr.client_id}: IB lets only that "
                f"client id (or TWS) cancel it; reconnect with --client-id {tr.client_id} "
                "or cancel it in TWS"
            )
        if tr.status.is_terminal:
            raise BrokerError(f"order {coid} is no longer working at IB")
        tr.cancel_requested = True
        ib.client.cancelOrder(tr.ib_order_id, "")  # type: ignore[no-untyped-call]  # unannotated in ib_async
        self.events.report(tr, OrderStatus.PENDING_CANCEL, "cancel requested")

    def _cancel_foreign(self, f: Foreign) -> None:
        if not f.cancellable:
            raise BrokerError(
                f"order {f.client_order_id} ({f.owner}) is read-only here: IB lets only the "
                "client that placed it, or TWS, cancel it"
            )
        ib = self._check_can_trade(f"cancel of {f.client_order_id}")
        ib.client.cancelOrder(f.ib_order_id, "")  # type: ignore[no-untyped-call]  # unannotated in ib_async
        self._emit(
            OrderStatusEvent(
                f.client_order_id,
                OrderStatus.PENDING_CANCEL,
                "cancel requested",
                str(f.ib_order_id),
                time.time(),
                str(f.perm_id),
            )
        )

    def modify_order(self, order: Order) -> None:
        ib = self._check_can_trade(f"modify of {order.client_order_id}")
        if self._foreign(order) is not None:
            raise BrokerError(
                f"order {order.client_order_id} is not fbterm's: modify it where it was placed"
            )
        tr = self._tracked(order)
        trade = self.events.trade(tr)
        if trade is None or tr.status.is_terminal or tr.client_id != self.config.client_id:
            raise BrokerError(f"order {order.client_order_id} is no longer working at IB")
        if order.quantity <= tr.filled + 1e-9:
            raise BrokerError(
                f"order {order.client_order_id}: quantity {order.quantity:g} "
                f"not above filled {tr.filled:g}"
            )
        new = copy.copy(trade.order)
        fresh = self._ib_order(order)
        new.totalQuantity, new.orderType = fresh.totalQuantity, fresh.orderType
        new.lmtPrice, new.auxPrice, new.tif = fresh.lmtPrice, fresh.auxPrice, fresh.tif
        tr.pending_modify = order
        ib.placeOrder(trade.contract, new)

    def _ib_order(self, order: Order) -> IBOrder:
        o = IBOrder(
            action=order.side.value,
            totalQuantity=float(order.quantity),
            orderType=order.order_type.value,
            tif=order.tif.value,
            orderRef=make_order_ref(order.strategy_id, order.client_order_id),
            account=self.account,
            transmit=True,
        )
        if order.limit_price is not None:
            o.lmtPrice = float(order.limit_price)
        if order.stop_price is not None:
            o.auxPrice = float(order.stop_price)
        parent = self.reg.by_coid.get(order.parent_id) if order.parent_id else None
        return apply_order_terms(o, order, parent.ib_order_id if parent else None)

    def _tracked(self, order: Order) -> Tracked:
        tr = self.reg.by_coid.get(order.client_order_id)
        if tr is None:
            raise BrokerError(f"order {order.client_order_id} is unknown at IB")
        return tr

    def _foreign(self, order: Order) -> Foreign | None:
        if order.broker_perm_id and order.broker_perm_id.isdigit():
            f = self.reg.foreign.get(int(order.broker_perm_id))
            if f is not None and f.client_order_id == order.client_order_id:
                return f
        return next(
            (f for f in self.reg.foreign.values() if f.client_order_id == order.client_order_id),
            None,
        )

    # -- queries ------------------------------------------------------------------------------
    def query_open_orders(self) -> list[BrokerOrder]:
        """The working orders this connection has heard of (a cheap view, not a re-sync:
        :meth:`fetch_book` asks IB)."""
        return queries.open_orders(self.ib, self.reg, self.account)

    def query_positions(self) -> list[BrokerPosition]:
        return queries.positions(self.ib, self.account)

    def query_account_details(self) -> AccountDetails:
        return queries.account_details(self.ib, self.account)

    async def refresh_account(self) -> AccountDetails:
        """Ask IB for a fresh account summary (it otherwise updates every few minutes)."""
        await asyncio.wait_for(self.ib.reqAccountSummaryAsync(), self.config.request_timeout)
        return self.query_account_details()

    # -- fbterm events out: to the engine's handler, on its loop --------------------------------
    def _emit(self, ev: BrokerEvent) -> None:
        handler = self._handler
        if handler is None:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            handler(ev)
        else:
            loop.call_soon(handler, ev)
