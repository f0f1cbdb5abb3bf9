"""What the adapter answers from ib_async's live subscriptions: cheap, synchronous views.

Positions, portfolio marks and account values are subscriptions IB keeps current; reading them
is fine for display and risk. A re-sync never uses these: it asks IB (:mod:`.book`).
"""

from __future__ import annotations

import time

from ib_async import IB

from fbterm.execution.brokers.base import BrokerError, BrokerOrder, BrokerPosition
from fbterm.execution.brokers.ib.book import open_order
from fbterm.execution.brokers.ib.contracts import from_ib_contract
from fbterm.execution.brokers.ib.tracking import Registry
from fbterm.model import AccountDetails


def open_orders(ib: IB, reg: Registry, account: str) -> list[BrokerOrder]:
    out = []
    for t in ib.openTrades():
        b = open_order(reg, t, account)
        if b is not None:
            out.append(b)
    return out


def positions(ib: IB, account: str) -> list[BrokerPosition]:
    marks = {p.contract.conId: p.marketPrice for p in ib.portfolio(account)}
    out: list[BrokerPosition] = []
    for p in ib.positions(account):
        inst = from_ib_contract(p.contract)
        out.append(
            BrokerPosition(
                inst,
                float(p.position),
                float(p.avgCost) / inst.multiplier,
                p.account,
                marks.get(p.contract.conId),
            )
        )
    return out


def account_details(ib: IB, account: str) -> AccountDetails:
    values: dict[str, float] = {}
    currency = "USD"
    # ib.accountSummary() is the blocking API (it runs the loop): read what the live
    # summary subscription keeps instead.
    summary = [v for v in ib.wrapper.acctSummary.values() if v.account == account]
    for v in [*ib.accountValues(account), *summary]:
        try:
            values[v.tag] = float(v.value)
        except ValueError:
            continue
        if v.tag == "NetLiquidation" and v.currency:
            currency = v.currency
    if "NetLiquidation" not in values:
        raise BrokerError(f"no account values from IB yet for account {account or '?'}")
    return AccountDetails(
        account=account,
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
