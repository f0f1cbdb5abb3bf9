"""The gateway's answers, field by field, in the order server version 178 sends them."""

from __future__ import annotations

import time
from typing import Any

from fbterm.testing.ibserver.protocol import (
    COMMISSION_REPORT,
    COMPLETED_ORDER,
    CONTRACT_DATA,
    CONTRACT_DATA_END,
    ERR_MSG,
    EXECUTION_DATA,
    OPEN_ORDER,
    ORDER_STATUS,
    PORTFOLIO_VALUE,
    POSITION_DATA,
    TICK_ASK,
    TICK_BID,
    TICK_LAST,
    ContractFields,
    ib_time,
)
from fbterm.testing.ibserver.state import ServerExecution, ServerOrder, ServerPosition, Session


def send_error(s: Session, req_id: int, code: int, msg: str) -> None:
    s.send(ERR_MSG, 2, req_id, code, msg, "")


def send_position(s: Session, p: ServerPosition) -> None:
    s.send(POSITION_DATA, 3, p.account, *p.contract.fields(), p.quantity, p.avg_cost)


def send_portfolio(s: Session, p: ServerPosition, mark: float) -> None:
    value = p.quantity * mark * p.contract.mult
    unreal = value - p.quantity * p.avg_cost
    s.send(
        PORTFOLIO_VALUE,
        8,
        *p.contract.fields(primary=True),
        p.quantity,
        mark,
        value,
        p.avg_cost,
        unreal,
        0.0,
        p.account,
    )


def send_order_status(s: Session, o: ServerOrder) -> None:
    s.send(
        ORDER_STATUS,
        o.order_id,
        o.status,
        o.filled,
        o.remaining,
        o.avg_price,
        o.perm_id,
        0,
        o.last_fill_price,
        o.client_id,
        "",
        0.0,
    )


def send_execution(s: Session, req_id: int, e: ServerExecution) -> None:
    o = e.order
    side = "BOT" if o.action == "BUY" else "SLD"
    s.send(
        EXECUTION_DATA,
        req_id,
        o.order_id,
        *o.contract.fields(),
        e.exec_id,
        ib_time(e.ts),
        o.account,
        "ISLAND",
        side,
        e.shares,
        e.price,
        o.perm_id,
        o.client_id,
        0,
        e.cum_qty,
        e.avg_price,
        o.order_ref,
        "",
        "",
        "",
        1,
        0,
    )


def send_commission(s: Session, e: ServerExecution) -> None:
    s.send(COMMISSION_REPORT, 1, e.exec_id, e.commission, "USD", "", "", "")


def send_quote(s: Session, req_id: int, bid: float, ask: float, last: float, size: float) -> None:
    s.send(1, 6, req_id, TICK_BID, bid, size, 0)
    s.send(1, 6, req_id, TICK_ASK, ask, size, 0)
    s.send(1, 6, req_id, TICK_LAST, last, size, 0)


def send_contract_data(s: Session, req_id: int, c: ContractFields, mult: str) -> None:
    # Field order of CONTRACT_DATA at server version >= 164 (no version field).
    s.send(
        CONTRACT_DATA,
        req_id,
        c.symbol,
        c.sec_type,
        c.last_trade,
        c.strike,
        c.right,
        "SMART",
        c.currency or "USD",
        c.local_symbol or c.symbol,
        c.symbol,
        c.trading_class or c.symbol,
        c.conid,
        0.01,
        mult,
        "LMT,MKT,STP,STP LMT",
        "SMART,ISLAND",
        1,
        0,
        c.symbol,
        c.listing,
        "",
        "",
        "",
        "",
        "US/Eastern",
        "",
        "",
        "",
        "",
        0,
        1,
        c.symbol if c.sec_type == "OPT" else "",
        "STK" if c.sec_type == "OPT" else "",
        "26",
        c.last_trade,
        "COMMON",
        1,
        1,
        1,
    )
    s.send(CONTRACT_DATA_END, 1, req_id)


def send_open_order(s: Session, o: ServerOrder) -> None:
    c = o.contract
    f: list[Any] = [
        OPEN_ORDER,
        o.order_id,
        *c.fields(),
        o.action,
        o.total_qty,
        o.order_type,
        o.lmt_price,
        o.aux_price,
        o.tif,
        "",
        o.account,
        "O",
        0,
        o.order_ref,
        o.client_id,
        o.perm_id,
        0,
        0,
        0.0,
        "",
        "",
        "",
        "",
        "",
        # modelCode .. deltaNeutralAuxPrice
        *[""] * 5,
        0,
        "",
        "",
        0,
        *[""] * 6,
        0,
        0,
        0,
        "",
        3,
        0,
        0,
        "",
        0,
        0,
        "",
        0,
        "",
        "",
        # continuousUpdate .. comboLegsDescrip, then no legs, no order legs, no params
        0,
        *[""] * 6,
        0,
        0,
        0,
        # scale fields, hedgeType
        *[""] * 4,
        # optOutSmartRouting, clearingAccount, clearingIntent, notHeld, no delta-neutral
        0,
        "",
        "",
        0,
        0,
        # algoStrategy
        "",
        # solicited, whatIf, order state ...
        0,
        0,
        o.status,
        *[""] * 14,
        0,
        0,
        # no conditions
        0,
        # adjusted order fields .. usePriceMgmtAlgo
        *[""] * 7,
        0,
        *[""] * 4,
        0,
        0,
        "",
        "",
        # duration, postToAts, autoCancelParent (v159+), min trade qty .. mid offsets (v170+)
        "",
        "",
        0,
        *[""] * 5,
    ]
    s.send(*f)


def send_completed_order(s: Session, o: ServerOrder) -> None:
    """One COMPLETED_ORDER (what ``reqCompletedOrders`` replays): no client or order id,
    the perm id, IB's final status and its words for why."""
    c = o.contract
    f: list[Any] = [
        COMPLETED_ORDER,
        *c.fields(),
        o.action,
        o.total_qty,
        o.order_type,
        o.lmt_price,
        o.aux_price,
        o.tif,
        "",  # ocaGroup
        o.account,
        "O",  # openClose
        0,  # origin
        o.order_ref,
        o.perm_id,
        0,  # outsideRth
        0,  # hidden
        0,  # discretionaryAmt
        "",  # goodAfterTime
        "",  # faGroup
        "",  # faMethod
        "",  # faPercentage
        # modelCode .. deltaNeutralAuxPrice (deltaNeutralOrderType empty)
        *[""] * 23,
        # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent, comboLegsDescrip
        0,
        "",
        "",
        "",
        "",
        0,  # no combo legs
        0,  # no order combo legs
        0,  # no smart combo routing params
        "",  # scaleInitLevelSize
        "",  # scaleSubsLevelSize
        "",  # scalePriceIncrement (none)
        "",  # hedgeType (none)
        "",  # clearingAccount
        "",  # clearingIntent
        0,  # notHeld
        0,  # no delta-neutral contract
        "",  # algoStrategy (none)
        0,  # solicited
        o.status,
        0,  # randomizeSize
        0,  # randomizePrice
        0,  # no conditions
        "",  # trailStopPrice
        "",  # lmtPriceOffset
        "",  # cashQty
        0,  # dontUseAutoPriceForHedge
        0,  # isOmsContainer
        "",  # autoCancelDate
        o.filled,
        "",  # refFuturesConId
        0,  # autoCancelParent
        "",  # shareholder
        0,  # imbalanceOnly
        0,  # routeMarketableToBbo
        "",  # parentPermId
        time.strftime("%Y%m%d %H:%M:%S", time.gmtime(o.completed_ts or time.time())),
        o.completed_status,
        # minTradeQty .. midOffsetAtHalf (v170+)
        *[""] * 5,
    ]
    s.send(*f)
