"""fbterm's order terms on an IB order: trailing stops, IOC/GTD, outside-RTH, the Adaptive
algo and bracket children (parentId + an OCA group)."""

from __future__ import annotations

import asyncio
import datetime as dt

from ib_async import IB, TagValue
from ib_async import Contract as IBContract
from ib_async.order import Order as IBOrder
from ib_async.order import OrderState as IBOrderState

from fbterm.execution.brokers.base import BrokerError
from fbterm.model import MarginImpact, Order, OrderType, TimeInForce

# IB's OCA type 2: reduce the group's other orders on a fill, with overfill protection.
OCA_REDUCE_WITH_BLOCK = 2
UNSET_DOUBLE = 1.7976931348623157e308


def gtd_string(ts: float) -> str:
    """IB's goodTillDate for epoch seconds: ``yyyymmdd-hh:mm:ss`` reads as UTC."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y%m%d-%H:%M:%S")


def apply_order_terms(o: IBOrder, order: Order, parent_ib_id: int | None) -> IBOrder:
    """Set what ``order`` asks beyond type, prices and TIF on ``o`` (returned, for chaining)."""
    opts = order.options
    if order.order_type is OrderType.TRAIL:
        # auxPrice is the trailing amount for TRAIL; the current level is trailStopPrice.
        o.auxPrice = float(opts.trail_amount) if opts.trail_amount is not None else UNSET_DOUBLE
        if opts.trail_percent is not None:
            o.trailingPercent = float(opts.trail_percent)
        o.trailStopPrice = float(order.stop_price) if order.stop_price is not None else UNSET_DOUBLE
    if order.tif is TimeInForce.GTD and opts.good_till is not None:
        o.goodTillDate = gtd_string(opts.good_till)
    o.outsideRth = opts.outside_rth
    if opts.algo:
        o.algoStrategy = opts.algo
        o.algoParams = [TagValue("adaptivePriority", opts.algo_priority)]
    if parent_ib_id is not None:
        o.parentId = parent_ib_id
    if order.oca_group:
        o.ocaGroup = order.oca_group
        o.ocaType = OCA_REDUCE_WITH_BLOCK
    return o


def _num(v: object) -> float | None:
    try:
        x = float(str(v))
    except ValueError:
        return None
    return None if x >= 1e300 else x


def margin_impact(st: IBOrderState) -> MarginImpact:
    """IB's what-if answer (strings, UNSET_DOUBLE for unknown) as fbterm's figures."""
    return MarginImpact(
        init_margin_change=_num(st.initMarginChange) or 0.0,
        maint_margin_change=_num(st.maintMarginChange) or 0.0,
        init_margin_after=_num(st.initMarginAfter) or 0.0,
        maint_margin_after=_num(st.maintMarginAfter) or 0.0,
        equity_with_loan=_num(st.equityWithLoanAfter) or 0.0,
        commission=_num(st.commission),
        warning=st.warningText or "",
    )


async def what_if(
    ib: IB, contract: IBContract, o: IBOrder, timeout: float, what: str
) -> MarginImpact:
    """IB's answer to ``o`` sent as a what-if (``whatIfOrder``): margin and commission."""
    try:
        st = await asyncio.wait_for(ib.whatIfOrderAsync(contract, o), timeout)
    except TimeoutError:
        raise BrokerError(f"{what}: no answer from IB within {timeout:g}s") from None
    return margin_impact(st)
