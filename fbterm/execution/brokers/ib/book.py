"""IB's own answers about the account, in fbterm's terms.

A re-sync must never read ib_async's caches (``openTrades()``, ``trades()``, ``fills()``): they
hold what this connection happened to hear, and survive a 1100/1102 outage unchanged. The
book is built only from the answers to ``reqAllOpenOrders`` (every client's working orders,
manual TWS orders included), ``reqCompletedOrders``, ``reqExecutions`` and ``reqPositions``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

from ib_async import IB
from ib_async import Fill as IBFill
from ib_async import Position as IBPosition
from ib_async import Trade as IBTrade

from fbterm.execution.brokers.base import BrokerOrder, BrokerPosition, FillEvent, VenueBook
from fbterm.execution.brokers.ib.contracts import from_ib_contract
from fbterm.execution.brokers.ib.tracking import (
    IB_TO_STATUS,
    Foreign,
    Registry,
    Tracked,
    order_type_of,
    owner_of,
)
from fbterm.model import Fill, Instrument, OrderStatus, Side


def price_or_none(v: float | Decimal | None) -> float | None:
    # ib_async marks "no price" with UNSET_DOUBLE (sys.float_info.max) or 0.
    return float(v) if v and v < 1e300 else None


async def read_book(
    ib: IB, reg: Registry, account: str, timeout: float, unsent: frozenset[str]
) -> VenueBook:
    """Ask IB for everything a reconciliation compares, one question after the other (the
    open-order questions share one request slot in ib_async)."""
    asked_at = time.time()
    open_trades: list[IBTrade] = await asyncio.wait_for(ib.reqAllOpenOrdersAsync(), timeout)
    completed: list[IBTrade] = await asyncio.wait_for(ib.reqCompletedOrdersAsync(False), timeout)
    # Executions after the orders: an order that fills in between shows its fill here.
    fills: list[IBFill] = await asyncio.wait_for(ib.reqExecutionsAsync(), timeout)
    positions: list[IBPosition] = await asyncio.wait_for(ib.reqPositionsAsync(), timeout)
    open_orders = [b for t in open_trades if (b := open_order(reg, t, account)) is not None]
    done = [b for t in completed if (b := completed_order(reg, t, account)) is not None]
    events = []
    for f in sorted(fills, key=lambda f: f.time):
        fe = fill_event(reg, f, account)
        if fe is not None:
            note_fill(reg, fe)
            events.append(fe)
    marks = {p.contract.conId: p.marketPrice for p in ib.portfolio(account)}
    pos = [
        BrokerPosition(
            from_ib_contract(p.contract),
            float(p.position),
            float(p.avgCost) / from_ib_contract(p.contract).multiplier,
            p.account,
            marks.get(p.contract.conId),
        )
        for p in positions
        if p.account == account and float(p.position) != 0.0
    ]
    return VenueBook(
        account, tuple(pos), tuple(open_orders), tuple(done), tuple(events), asked_at, unsent
    )


def open_order(reg: Registry, t: IBTrade, account: str) -> BrokerOrder | None:
    """A working order from ``reqAllOpenOrders``; ours are tracked, others registered."""
    o, st = t.order, t.orderStatus
    if account and o.account and o.account != account:
        return None
    att = reg.attribute(o.clientId, o.orderId, o.permId, o.orderRef)
    tr = att.tracked
    if att.ours and tr is None:
        # Ours by orderRef but unknown to this session (a restart): track it, so its fills
        # attribute and it can be cancelled by our id.
        tr = reg.add(
            Tracked(
                att.client_order_id,
                o.orderId,
                o.clientId,
                att.strategy_id,
                from_ib_contract(t.contract),
                Side(o.action),
                float(o.totalQuantity),
                OrderStatus.SUBMITTED,
                float(st.filled),
                sent=True,
            )
        )
    if tr is not None:
        reg.set_perm(tr, o.permId)
    instrument = tr.instrument if tr is not None else from_ib_contract(t.contract)
    owner = owner_of(o.clientId, o.orderId, reg.client_id, att.ours)
    cancellable = o.clientId == reg.client_id and o.orderId != 0
    if not att.ours:
        reg.foreign[o.permId] = Foreign(
            o.permId, o.orderId, o.clientId, instrument, owner, cancellable
        )
    status = IB_TO_STATUS.get(st.status, OrderStatus.SUBMITTED)
    if status in (OrderStatus.SUBMITTED, OrderStatus.PENDING_SUBMIT) and st.filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    return _broker_order(t, att.client_order_id, att.strategy_id, instrument, owner, cancellable,
                         status, float(st.filled), "")  # fmt: skip


def completed_order(reg: Registry, t: IBTrade, account: str) -> BrokerOrder | None:
    """An order IB no longer works, from ``reqCompletedOrders`` (no client or order id: it
    is known by its perm id and orderRef)."""
    o, st = t.order, t.orderStatus
    if account and o.account and o.account != account:
        return None
    att = reg.attribute(-1, 0, o.permId, o.orderRef)
    known = reg.foreign.get(o.permId)
    if att.ours:
        owner = "fbterm"
        instrument = att.tracked.instrument if att.tracked else from_ib_contract(t.contract)
    else:
        owner = known.owner if known else "another client or TWS"
        instrument = known.instrument if known else from_ib_contract(t.contract)
    status = IB_TO_STATUS.get(st.status, OrderStatus.CANCELLED)
    why = reg.completed_why.get(o.permId, "") or st.status
    return _broker_order(t, att.client_order_id, att.strategy_id, instrument, owner, False,
                         status, _number(o.filledQuantity), why)  # fmt: skip


def _broker_order(
    t: IBTrade,
    coid: str,
    strategy_id: str,
    instrument: Instrument,
    owner: str,
    cancellable: bool,
    status: OrderStatus,
    filled: float,
    reason: str,
) -> BrokerOrder:
    o = t.order
    return BrokerOrder(
        client_order_id=coid,
        broker_order_id=str(o.orderId),
        instrument=instrument,
        side=o.action,
        quantity=float(o.totalQuantity),
        filled=filled,
        order_type=order_type_of(o.orderType),
        limit_price=price_or_none(o.lmtPrice),
        stop_price=price_or_none(o.auxPrice),
        status=status,
        strategy_id=strategy_id,
        extra={"perm_id": str(o.permId), "tif": o.tif, "order_ref": o.orderRef},
        perm_id=str(o.permId),
        owner=owner,
        cancellable=cancellable,
        reason=reason,
        tif=o.tif or "DAY",
        account=o.account,
    )


def fill_event(reg: Registry, fill: IBFill, account: str) -> FillEvent | None:
    """An execution, attributed to our order (by id or orderRef) or to a foreign one, with
    its commission if it has arrived (before or after the execution)."""
    ex = fill.execution
    if account and ex.acctNumber and ex.acctNumber != account:
        return None
    att = reg.attribute(ex.clientId, ex.orderId, ex.permId, ex.orderRef)
    tr = att.tracked
    commission = reg.commissions.get(ex.execId)
    if commission is None and fill.commissionReport.execId == ex.execId:
        commission = reg.commissions[ex.execId] = float(fill.commissionReport.commission)
    ts = (
        fill.time.timestamp()
        if isinstance(fill.time, dt.datetime) and fill.time.year > 1970
        else time.time()
    )
    f = Fill(
        fill_id=ex.execId,
        client_order_id=att.client_order_id,
        instrument=tr.instrument if tr is not None else from_ib_contract(fill.contract),
        side=Side.BUY if ex.side == "BOT" else Side.SELL,
        quantity=float(ex.shares),
        price=float(ex.price),
        commission=commission or 0.0,
        ts=ts,
        strategy_id=att.strategy_id,
    )
    return FillEvent(
        f,
        broker_order_id=str(ex.orderId) if ex.orderId > 0 else None,
        perm_id=str(ex.permId) if ex.permId else None,
    )


def note_fill(reg: Registry, fe: FillEvent) -> bool:
    """Count an execution once against its tracked order; True the first time it is seen."""
    eid = fe.fill.fill_id
    if eid in reg.seen_exec:
        return False
    reg.seen_exec.add(eid)
    if eid in reg.commissions:
        reg.commission_sent.add(eid)
    tr = reg.by_coid.get(fe.fill.client_order_id)
    if tr is not None:
        tr.filled += fe.fill.quantity
        if fe.perm_id:
            reg.set_perm(tr, int(fe.perm_id))
    return True


def _number(v: object) -> float:
    try:
        f = float(str(v))
    except ValueError:
        return 0.0
    return f if f < 1e300 else 0.0
