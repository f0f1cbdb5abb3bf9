"""Interactive Brokers behind the broker port: ``BrokerIntegration`` on ib_async.

Everything here lives on the engine thread's event loop: the ``IB`` object is created in
:meth:`BrokerIntegration.start`, only its non-blocking calls (``placeOrder``, ``cancelOrder``)
and ``*Async`` coroutines are used, and every fbterm event is handed to the engine's handler on
that same loop (queued with ``call_soon`` so a handler never re-enters the broker call that
caused it).

What this adapter adds to ib_async:

* our ids on the wire: every order carries ``fb|<strategy>|<client order id>`` in ``orderRef``,
  so fills can be attributed even after a restart, when only IB remembers the order;
* IB order ids that never go backwards: the journal's highest id (``min_order_id``) and every
  id used in this session are floors for ``nextValidId``, which a restarted gateway may roll
  back;
* a connection state an operator can trust, reconnect with exponential backoff, and a re-sync
  after every reconnect (and after IB's 1102 "restored") that re-requests executions so a fill
  during the outage is never missed, and never re-sends an order, so none is duplicated;
* IB's error codes turned into one clear line each;
* read-only mode that refuses order commands, and a request throttle below IB's 50 msg/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal

from ib_async import IB
from ib_async import Fill as IBFill
from ib_async import Trade as IBTrade
from ib_async.objects import CommissionReport as IBCommissionReport
from ib_async.order import Order as IBOrder

from fbterm.config import IBConfig
from fbterm.execution.brokers.base import (
    BrokerError,
    BrokerEvent,
    BrokerMessage,
    BrokerOrder,
    BrokerPosition,
    CommissionEvent,
    ConnectionEvent,
    ConnectionState,
    EventHandler,
    FillEvent,
    ModifyAckEvent,
    OrderStatusEvent,
)
from fbterm.execution.brokers.ib_contracts import from_ib_contract, to_ib_contract
from fbterm.execution.brokers.ib_orders import apply_order_terms, margin_impact
from fbterm.model import (
    AccountDetails,
    Fill,
    Instrument,
    MarginImpact,
    Order,
    OrderStatus,
    OrderType,
    Side,
)

log = logging.getLogger("fbterm.execution.brokers.ib")
# ib_async logs every failure it raises; with no logging configured Python would print those
# to stderr next to our own one-line message. A NullHandler stops that fallback and still lets
# the records reach the application's handlers when it configures logging.
logging.getLogger("ib_async").addHandler(logging.NullHandler())

ORDER_REF_PREFIX = "fb"

# code -> (level, what it means for an operator). IB's own text is appended to the message.
IB_ERRORS: dict[int, tuple[str, str]] = {
    103: ("error", "duplicate order id: IB already used this id"),
    135: ("warning", "IB does not know this order"),
    162: ("warning", "historical data request failed"),
    165: ("info", "historical data service message"),
    200: ("error", "no security definition: IB does not know this contract"),
    201: ("error", "order rejected by IB"),
    202: ("info", "order cancelled"),
    203: ("error", "security not available or not allowed for this account"),
    321: ("error", "IB refused a malformed request"),
    354: ("warning", "no market data subscription for this contract"),
    366: ("warning", "no such historical data request (already finished or cancelled)"),
    502: ("error", "cannot connect to TWS/IB Gateway"),
    504: ("error", "not connected to TWS/IB Gateway"),
    1100: ("error", "IB Gateway lost its connection to IB's servers: orders and data paused"),
    1101: ("warning", "IB connection restored, market data lost: resubscribing and re-syncing"),
    1102: ("info", "IB connection restored, data kept: re-syncing executions"),
    1300: ("warning", "TWS socket port was reset: reconnecting"),
    2103: ("warning", "market data farm disconnected"),
    2104: ("info", "market data farm connected"),
    2105: ("warning", "historical data farm disconnected"),
    2106: ("info", "historical data farm connected"),
    2107: ("info", "historical data farm inactive, available on demand"),
    2108: ("info", "market data farm inactive, available on demand"),
    2110: ("error", "TWS lost its connection to IB's servers"),
    2157: ("warning", "security definition data farm disconnected"),
    2158: ("info", "security definition data farm connected"),
    10147: ("warning", "order to cancel or modify not found at IB"),
    10148: ("warning", "order can no longer be cancelled (already final)"),
    10197: ("warning", "no market data: a competing live session holds the subscription"),
}


def describe_ib_error(code: int, text: str) -> tuple[str, str]:
    """(level, one clear line) for an IB error/info code and IB's own message."""
    level, meaning = IB_ERRORS.get(
        code, ("info" if 2100 <= code < 2200 else "warning", "IB message")
    )
    text = text.strip().rstrip(":")
    return level, f"IB {code}: {meaning}" + (f" ({text})" if text else "")


def make_order_ref(strategy_id: str, client_order_id: str) -> str:
    return f"{ORDER_REF_PREFIX}|{strategy_id}|{client_order_id}"


def parse_order_ref(ref: str) -> tuple[str, str] | None:
    """(strategy id, client order id) from an orderRef we wrote, else None."""
    parts = ref.split("|", 2)
    if len(parts) == 3 and parts[0] == ORDER_REF_PREFIX and parts[2]:
        return parts[1], parts[2]
    return None


def _price(v: float | Decimal | None) -> float | None:
    # ib_async marks "no price" with UNSET_DOUBLE (sys.float_info.max) or 0.
    return float(v) if v and v < 1e300 else None


_IB_TO_STATUS = {
    "PendingSubmit": OrderStatus.PENDING_SUBMIT,
    "ApiPending": OrderStatus.PENDING_SUBMIT,
    "PreSubmitted": OrderStatus.SUBMITTED,
    "Submitted": OrderStatus.SUBMITTED,
    "PendingCancel": OrderStatus.PENDING_CANCEL,
    "ApiCancelled": OrderStatus.CANCELLED,
    "Cancelled": OrderStatus.CANCELLED,
    "Filled": OrderStatus.FILLED,
    "Inactive": OrderStatus.REJECTED,
}


@dataclass(slots=True)
class _Tracked:
    """What we know about one of our orders at IB."""

    client_order_id: str
    ib_order_id: int
    strategy_id: str
    instrument: Instrument
    side: Side
    quantity: float
    status: OrderStatus = OrderStatus.PENDING_SUBMIT  # the last status we reported
    filled: float = 0.0
    pending_modify: Order | None = None


@dataclass(frozen=True, slots=True)
class ResyncReport:
    """What a re-sync with IB found (also reported to the engine as a BrokerMessage)."""

    missed_fills: list[str] = field(default_factory=list)  # exec ids reported only now
    lost_orders: list[str] = field(default_factory=list)  # ours, no longer working at IB
    adopted_orders: list[str] = field(default_factory=list)  # ours by orderRef, unknown to us
    open_orders: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missed_fills or self.lost_orders or self.adopted_orders)


class BrokerIntegration:
    """The Interactive Brokers venue (TWS or IB Gateway) behind fbterm's broker port.

    Construct it anywhere; call :meth:`start` on the engine thread's running loop. The query
    methods answer from the state ib_async keeps live (positions, open orders and the account
    summary are subscriptions), so they are synchronous and cheap.
    """

    name = "ib"

    def __init__(
        self,
        config: IBConfig | None = None,
        *,
        min_order_id: int = 0,
        throttle: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.config = config or IBConfig()
        self._min_order_id = int(min_order_id)
        self._throttle = throttle
        self._sleep = sleep
        self._handler: EventHandler | None = None
        self._state = ConnectionState.DISCONNECTED
        self._ib: IB | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._account = ""
        self._highest_order_id = 0
        self._by_coid: dict[str, _Tracked] = {}
        self._by_ib_id: dict[int, _Tracked] = {}
        self._seen_exec: set[str] = set()
        self._commission_sent: set[str] = set()
        self._stopping = False
        self._connecting = False
        self._reconnect_task: asyncio.Task[None] | None = None
        self._resync_task: asyncio.Task[ResyncReport] | None = None
        self.reconnects = 0
        self.last_resync: ResyncReport | None = None

    # -- port basics ------------------------------------------------------------------------
    def set_event_handler(self, handler: EventHandler) -> None:
        self._handler = handler

    @property
    def connection_state(self) -> ConnectionState:
        return self._state

    @property
    def ib(self) -> IB:
        """The live ib_async connection (for the IB data source sharing it). Loop thread only."""
        if self._ib is None:
            raise BrokerError("IB broker not started")
        return self._ib

    @property
    def account(self) -> str:
        return self._account

    @property
    def highest_order_id(self) -> int:
        """The highest IB order id used so far: persist it and pass it back as ``min_order_id``."""
        return max(self._highest_order_id, self._min_order_id - 1)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = False
        if self._ib is None:
            self._ib = IB()
            self._wire(self._ib)
        cfg = self.config
        try:
            await self._connect()
        except (OSError, TimeoutError, ConnectionError) as e:
            self._set_state(ConnectionState.DISCONNECTED, f"cannot connect: {_reason(e)}")
            raise ConnectionError(
                f"IB Gateway/TWS not reachable at {cfg.host}:{cfg.port} (client id {cfg.client_id}): "
                f"{_reason(e)}"
            ) from None
        # Fills of our orders while fbterm was down are reported now (by orderRef); the
        # engine drops the ones its journal already has.
        await self.resync()

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._reconnect_task, self._resync_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._ib is not None and self._ib.isConnected():
            self._ib.disconnect()
        self._set_state(ConnectionState.DISCONNECTED, "stopped")

    # -- connection -------------------------------------------------------------------------
    def _wire(self, ib: IB) -> None:
        ib.orderStatusEvent += self._on_order_status
        ib.openOrderEvent += self._on_open_order
        ib.execDetailsEvent += self._on_exec_details
        ib.commissionReportEvent += self._on_commission
        ib.errorEvent += self._on_error
        ib.disconnectedEvent += self._on_disconnected

    async def _connect(self) -> None:
        ib, cfg = self.ib, self.config
        self._connecting = True
        try:
            await ib.connectAsync(
                cfg.host,
                cfg.port,
                clientId=cfg.client_id,
                timeout=cfg.connect_timeout,
                readonly=cfg.read_only,
                account=cfg.account,
            )
            accounts = ib.managedAccounts()
            if cfg.account and cfg.account not in accounts:
                ib.disconnect()
                raise ConnectionError(
                    f"account {cfg.account} is not managed by this login (managed: {', '.join(accounts)})"
                )
            self._account = cfg.account or (accounts[0] if accounts else "")
            # A restarted gateway may hand out ids we already used: never go below our floor.
            ib.client.updateReqId(max(self._min_order_id, self._highest_order_id + 1))  # type: ignore[no-untyped-call]  # ib_async leaves it unannotated
            ib.client.MaxRequests = int(cfg.max_messages_per_second) if self._throttle else 0
            ib.client.RequestsInterval = 1
            await asyncio.wait_for(ib.reqAccountSummaryAsync(), cfg.request_timeout)
        finally:
            self._connecting = False
        state = ConnectionState.READ_ONLY if cfg.read_only else ConnectionState.CONNECTED
        self._set_state(
            state,
            f"connected to {cfg.host}:{cfg.port} as client {cfg.client_id}, "
            f"account {self._account}",
        )

    def _on_disconnected(self) -> None:
        if self._stopping or self._connecting:
            return
        if self._reconnect_task is not None and not self._reconnect_task.done():
            return
        self._set_state(ConnectionState.RECONNECTING, "connection to IB Gateway lost; reconnecting")
        assert self._loop is not None
        self._reconnect_task = self._loop.create_task(self._reconnect_loop())

    def _stop_requested(self) -> bool:
        # A call, not the attribute: a type checker would keep the loop condition's answer
        # across the await, where stop() can change it.
        return self._stopping

    async def _reconnect_loop(self) -> None:
        cfg = self.config
        delay = cfg.reconnect_initial_delay
        attempt = 0
        while not self._stopping:
            attempt += 1
            await self._sleep(delay)
            if self._stop_requested():  # stop() may have run while we slept
                return
            try:
                await self._connect()
            except (OSError, TimeoutError, ConnectionError) as e:
                self._set_state(
                    ConnectionState.RECONNECTING,
                    f"reconnect attempt {attempt} failed ({_reason(e)}); "
                    f"next in {min(delay * 2, cfg.reconnect_max_delay):g}s",
                )
                delay = min(delay * 2, cfg.reconnect_max_delay)
                continue
            self.reconnects += 1
            await self.resync()
            return

    def _set_state(self, state: ConnectionState, message: str) -> None:
        changed = state is not self._state
        self._state = state
        if changed or state is ConnectionState.RECONNECTING:
            log.info("IB connection %s: %s", state.value, message)
            self._emit(ConnectionEvent(state, message, time.time()))

    # -- re-sync ----------------------------------------------------------------------------
    async def resync(self) -> ResyncReport:
        """Re-request executions and open orders and reconcile them with what we reported.

        Fills we never reported are reported now (with their commission); orders of ours that
        IB no longer works are closed (rejected if IB never acknowledged them: they are not
        re-sent, so nothing is duplicated); orders carrying our orderRef that we did not know
        are adopted so later fills attribute to them.
        """
        ib = self.ib
        timeout = self.config.request_timeout
        fills: list[IBFill] = await asyncio.wait_for(ib.reqExecutionsAsync(), timeout)
        if not self.config.read_only:
            await asyncio.wait_for(ib.reqOpenOrdersAsync(), timeout)
        missed: list[str] = []
        for f in sorted(fills, key=lambda f: f.time):
            if self._report_fill(f):
                missed.append(f.execution.execId)
        open_trades = ib.openTrades()
        open_ids = {t.order.orderId for t in open_trades}
        adopted: list[str] = []
        for t in open_trades:
            if t.order.orderId not in self._by_ib_id:
                ref = parse_order_ref(t.order.orderRef)
                if ref is not None:
                    self._track_trade(t, ref)
                    adopted.append(ref[1])
            tracked = self._by_ib_id.get(t.order.orderId)
            if tracked is not None:
                self._on_order_status(t)
        lost: list[str] = []
        if not self.config.read_only:
            for tr in list(self._by_ib_id.values()):
                if tr.status.is_terminal or tr.ib_order_id in open_ids:
                    continue
                if tr.filled >= tr.quantity - 1e-9:
                    tr.status = OrderStatus.FILLED
                    continue
                lost.append(tr.client_order_id)
                if tr.status is OrderStatus.PENDING_SUBMIT:
                    self._report_status(
                        tr,
                        OrderStatus.REJECTED,
                        "never reached IB before the connection dropped; not re-sent",
                    )
                else:
                    self._report_status(
                        tr, OrderStatus.CANCELLED, "no longer working at IB after reconnect"
                    )
        report = ResyncReport(missed, lost, adopted, len(open_trades))
        self.last_resync = report
        msg = (
            f"re-sync with IB: {len(open_trades)} open orders, {len(missed)} missed fills reported, "
            f"{len(lost)} orders closed, {len(adopted)} adopted"
        )
        self._emit(BrokerMessage(0, msg, None, "info" if report.clean else "warning", time.time()))
        return report

    def _track_trade(self, t: IBTrade, ref: tuple[str, str]) -> _Tracked:
        o = t.order
        tr = _Tracked(
            ref[1],
            o.orderId,
            ref[0],
            from_ib_contract(t.contract),
            Side(o.action),
            float(o.totalQuantity),
            OrderStatus.SUBMITTED,
            float(t.orderStatus.filled),
        )
        self._by_coid[tr.client_order_id] = tr
        self._by_ib_id[tr.ib_order_id] = tr
        self._highest_order_id = max(self._highest_order_id, o.orderId)
        return tr

    # -- orders -----------------------------------------------------------------------------
    def _check_can_trade(self, what: str) -> IB:
        if self.config.read_only:
            raise BrokerError(f"IB read-only mode: {what} refused")
        if self._loop_thread is not None and threading.get_ident() != self._loop_thread:
            raise BrokerError(f"{what}: call the IB broker from the engine thread only")
        if (
            self._state is not ConnectionState.CONNECTED
            or self._ib is None
            or not self._ib.isConnected()
        ):
            raise BrokerError(f"{what}: not connected to IB ({self._state.value})")
        return self._ib

    def execute_order(self, order: Order) -> None:
        ib = self._check_can_trade(f"order {order.client_order_id}")
        if order.client_order_id in self._by_coid:
            raise BrokerError(f"order {order.client_order_id} was already sent to IB")
        oid = ib.client.getReqId()
        oid = max(oid, self._min_order_id, self._highest_order_id + 1)
        ib.client.updateReqId(oid + 1)  # type: ignore[no-untyped-call]  # unannotated in ib_async
        self._highest_order_id = oid
        ib_order = self._ib_order(order)
        ib_order.orderId = oid
        tr = _Tracked(
            order.client_order_id,
            oid,
            order.strategy_id,
            order.instrument,
            order.side,
            order.quantity,
        )
        self._by_coid[tr.client_order_id] = tr
        self._by_ib_id[oid] = tr
        ib.placeOrder(to_ib_contract(order.instrument), ib_order)

    async def what_if(self, order: Order) -> MarginImpact:
        """IB's margin and commission preview for ``order`` (nothing is placed)."""
        ib = self._check_can_trade(f"what-if of {order.client_order_id}")
        ib_order = self._ib_order(order)
        try:
            st = await asyncio.wait_for(
                ib.whatIfOrderAsync(to_ib_contract(order.instrument), ib_order),
                self.config.request_timeout,
            )
        except TimeoutError:
            raise BrokerError(
                f"what-if of {order.client_order_id}: no answer from IB within "
                f"{self.config.request_timeout:g}s"
            ) from None
        return margin_impact(st)

    def cancel_order(self, order: Order) -> None:
        ib = self._check_can_trade(f"cancel of {order.client_order_id}")
        tr = self._tracked(order)
        trade = self._trade(tr)
        if tr.status.is_terminal or (trade is not None and trade.isDone()):
            raise BrokerError(f"order {order.client_order_id} is no longer working at IB")
        if trade is not None:
            ib.cancelOrder(trade.order)  # ib_async marks the trade PendingCancel and tells us
        else:
            ib.client.cancelOrder(tr.ib_order_id, "")  # type: ignore[no-untyped-call]  # unannotated in ib_async
        self._report_status(tr, OrderStatus.PENDING_CANCEL, "cancel requested")

    def modify_order(self, order: Order) -> None:
        ib = self._check_can_trade(f"modify of {order.client_order_id}")
        tr = self._tracked(order)
        trade = self._trade(tr)
        if trade is None or trade.isDone() or tr.status.is_terminal:
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
            account=self._account,
            transmit=True,
        )
        if order.limit_price is not None:
            o.lmtPrice = float(order.limit_price)
        if order.stop_price is not None:
            o.auxPrice = float(order.stop_price)
        parent = self._by_coid.get(order.parent_id) if order.parent_id else None
        return apply_order_terms(o, order, parent.ib_order_id if parent else None)

    def _tracked(self, order: Order) -> _Tracked:
        tr = self._by_coid.get(order.client_order_id)
        if tr is None and order.broker_order_id and order.broker_order_id.isdigit():
            tr = self._by_ib_id.get(int(order.broker_order_id))
        if tr is None:
            raise BrokerError(f"order {order.client_order_id} is unknown at IB")
        return tr

    def _trade(self, tr: _Tracked) -> IBTrade | None:
        ib = self.ib
        return ib.wrapper.trades.get((ib.wrapper.clientId, tr.ib_order_id))

    # -- queries ----------------------------------------------------------------------------
    def query_open_orders(self) -> list[BrokerOrder]:
        out: list[BrokerOrder] = []
        for t in self.ib.openTrades():
            o, st = t.order, t.orderStatus
            tr = self._by_ib_id.get(o.orderId)
            ref = parse_order_ref(o.orderRef)
            coid = tr.client_order_id if tr else (ref[1] if ref else None)
            status = _IB_TO_STATUS.get(st.status, OrderStatus.SUBMITTED)
            if status is OrderStatus.SUBMITTED and st.filled > 0:
                status = OrderStatus.PARTIALLY_FILLED
            out.append(
                BrokerOrder(
                    client_order_id=coid,
                    broker_order_id=str(o.orderId),
                    instrument=tr.instrument if tr else from_ib_contract(t.contract),
                    side=o.action,
                    quantity=float(o.totalQuantity),
                    filled=float(st.filled),
                    order_type=OrderType(o.orderType)
                    if o.orderType in OrderType._value2member_map_
                    else OrderType.LIMIT,
                    limit_price=_price(o.lmtPrice),
                    stop_price=_price(o.auxPrice),
                    status=status,
                    strategy_id=tr.strategy_id if tr else (ref[0] if ref else ""),
                    extra={"perm_id": str(o.permId), "tif": o.tif, "order_ref": o.orderRef},
                )
            )
        return out

    def query_positions(self) -> list[BrokerPosition]:
        ib = self.ib
        marks = {p.contract.conId: p.marketPrice for p in ib.portfolio(self._account)}
        out: list[BrokerPosition] = []
        for p in ib.positions(self._account):
            inst = from_ib_contract(p.contract)
            mult = inst.multiplier
            out.append(
                BrokerPosition(
                    inst,
                    float(p.position),
                    float(p.avgCost) / mult,
                    p.account,
                    marks.get(p.contract.conId),
                )
            )
        return out

    def query_account_details(self) -> AccountDetails:
        ib = self.ib
        values: dict[str, float] = {}
        currency = "USD"
        # ib.accountSummary() is the blocking API (it runs the loop): read what the live
        # summary subscription keeps instead.
        summary = [v for v in ib.wrapper.acctSummary.values() if v.account == self._account]
        for v in [*ib.accountValues(self._account), *summary]:
            try:
                values[v.tag] = float(v.value)
            except ValueError:
                continue
            if v.tag == "NetLiquidation" and v.currency:
                currency = v.currency
        if "NetLiquidation" not in values:
            raise BrokerError(f"no account values from IB yet for account {self._account or '?'}")
        return AccountDetails(
            account=self._account,
            cash=values.get("TotalCashValue", 0.0),
            equity=values["NetLiquidation"],
            buying_power=values.get("BuyingPower", 0.0),
            margin_used=values.get("InitMarginReq", 0.0),
            maintenance_margin=values.get("MaintMarginReq", 0.0),
            realized_pnl=values.get("RealizedPnL", 0.0),
            unrealized_pnl=values.get("UnrealizedPnL", 0.0),
            currency=currency,
            ts=time.time(),
        )

    async def refresh_account(self) -> AccountDetails:
        """Ask IB for a fresh account summary (it otherwise updates every few minutes)."""
        ib = self.ib
        await asyncio.wait_for(ib.reqAccountSummaryAsync(), self.config.request_timeout)
        return self.query_account_details()

    # -- ib_async events -> fbterm events --------------------------------------------------------
    def _emit(self, ev: BrokerEvent) -> None:
        handler = self._handler
        if handler is None:
            return
        loop = self._loop
        if loop is None or loop.is_closed():
            handler(ev)
        else:
            loop.call_soon(handler, ev)

    def _report_status(self, tr: _Tracked, status: OrderStatus, reason: str = "") -> None:
        if tr.status is status or tr.status.is_terminal:
            return
        tr.status = status
        self._emit(
            OrderStatusEvent(tr.client_order_id, status, reason, str(tr.ib_order_id), time.time())
        )

    def _on_order_status(self, trade: IBTrade) -> None:
        tr = self._by_ib_id.get(trade.order.orderId)
        if tr is None or trade.order.clientId not in (self.config.client_id, 0):
            return
        st = trade.orderStatus.status
        if st in ("PreSubmitted", "Submitted"):
            if tr.status is OrderStatus.PENDING_SUBMIT:
                self._report_status(tr, OrderStatus.SUBMITTED)
        elif st == "PendingCancel":
            self._report_status(tr, OrderStatus.PENDING_CANCEL)
        elif st in ("Cancelled", "ApiCancelled", "Inactive"):
            entry = trade.log[-1] if trade.log else None
            code = entry.errorCode if entry else 0
            reason = (
                describe_ib_error(code, _ib_text(entry.message))[1]
                if entry is not None and code
                else ""
            )
            if st == "Inactive" or (
                code and code != 202 and tr.status is OrderStatus.PENDING_SUBMIT
            ):
                self._report_status(tr, OrderStatus.REJECTED, reason or "order inactive at IB")
            else:
                self._report_status(tr, OrderStatus.CANCELLED, reason or "cancelled at IB")
        elif st == "Filled" and tr.filled >= tr.quantity - 1e-9:
            # Fills drive quantities and the FILLED state; only remember IB's word here.
            tr.status = OrderStatus.FILLED

    def _on_open_order(self, trade: IBTrade) -> None:
        tr = self._by_ib_id.get(trade.order.orderId)
        if tr is None or tr.pending_modify is None:
            return
        want, o = tr.pending_modify, trade.order
        if (
            abs(float(o.totalQuantity) - want.quantity) > 1e-9
            or o.orderType != want.order_type.value
        ):
            return  # an echo of the old terms still in flight
        if _price(o.lmtPrice) != want.limit_price or _price(o.auxPrice) != want.stop_price:
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

    def _on_exec_details(self, trade: IBTrade, fill: IBFill) -> None:
        self._report_fill(fill)

    def _report_fill(self, fill: IBFill) -> bool:
        ex = fill.execution
        if ex.execId in self._seen_exec:
            return False
        tr = self._by_ib_id.get(ex.orderId) if ex.clientId == self.config.client_id else None
        if tr is None:
            ref = parse_order_ref(ex.orderRef)
            tr = self._by_coid.get(ref[1]) if ref else None
            if tr is None and ref is not None:
                # Our order from an earlier session: attribute by the orderRef we wrote.
                tr = _Tracked(
                    ref[1],
                    ex.orderId,
                    ref[0],
                    from_ib_contract(fill.contract),
                    Side.BUY if ex.side == "BOT" else Side.SELL,
                    float(ex.cumQty),
                    OrderStatus.SUBMITTED,
                )
        if tr is None:
            return False  # another client's or a manual TWS order
        self._seen_exec.add(ex.execId)
        tr.filled += float(ex.shares)
        # A reqExecutions answer carries a fresh Fill; the commission lands on the one
        # ib_async stored first.
        stored = self._ib.wrapper.fills.get(ex.execId) if self._ib is not None else None
        report = (stored or fill).commissionReport
        commission = float(report.commission) if report.execId == ex.execId else 0.0
        if commission:
            self._commission_sent.add(ex.execId)
        ts = (
            fill.time.timestamp()
            if isinstance(fill.time, dt.datetime) and fill.time.year > 1970
            else time.time()
        )
        self._emit(
            FillEvent(
                Fill(
                    fill_id=ex.execId,
                    client_order_id=tr.client_order_id,
                    instrument=tr.instrument,
                    side=Side.BUY if ex.side == "BOT" else Side.SELL,
                    quantity=float(ex.shares),
                    price=float(ex.price),
                    commission=commission,
                    ts=ts,
                    strategy_id=tr.strategy_id,
                )
            )
        )
        return True

    def _on_commission(self, trade: IBTrade, fill: IBFill, report: IBCommissionReport) -> None:
        eid = report.execId
        if eid in self._seen_exec and eid not in self._commission_sent:
            self._commission_sent.add(eid)
            self._emit(CommissionEvent(eid, float(report.commission)))

    def _on_error(self, req_id: int, code: int, text: str, contract: object) -> None:
        level, message = describe_ib_error(code, text)
        tr = self._by_ib_id.get(req_id) if req_id > 0 else None
        self._emit(
            BrokerMessage(code, message, tr.client_order_id if tr else None, level, time.time())
        )
        if code == 1100:
            self._set_state(ConnectionState.RECONNECTING, message)
        elif code in (1101, 1102) and self._ib is not None and self._ib.isConnected():
            state = (
                ConnectionState.READ_ONLY if self.config.read_only else ConnectionState.CONNECTED
            )
            self._set_state(state, message)
            # Fills during the outage are only found by asking again.
            assert self._loop is not None
            self._resync_task = self._loop.create_task(self._safe_resync())

    async def _safe_resync(self) -> ResyncReport:
        try:
            return await self.resync()
        except (TimeoutError, ConnectionError) as e:
            self._emit(
                BrokerMessage(
                    0, f"re-sync with IB failed: {_reason(e)}", None, "error", time.time()
                )
            )
            return ResyncReport()


def _ib_text(message: str) -> str:
    # ib_async logs "Error 201, reqId 7: Order rejected - reason:..." - keep IB's own words.
    return message.split(": ", 1)[1] if ": " in message else message


def _reason(e: BaseException) -> str:
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the gateway running and the API port open?)"
    text = str(e) or type(e).__name__
    return text
