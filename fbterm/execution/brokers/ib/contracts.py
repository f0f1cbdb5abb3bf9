"""Instruments <-> IB contracts, and the qualified contracts orders are sent with.

An order names its contract by IB's contract id and primary exchange, never by a bare
``Stock(symbol, "SMART", "USD")`` that IB may resolve to another listing. Contracts are
qualified once (``reqContractDetails``) and kept in the journal, so a restart does not ask again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Sequence

from ib_async import IB
from ib_async import Contract as IBContract
from ib_async import Option as IBOption
from ib_async import Stock as IBStock

from fbterm.execution.brokers.base import ContractStore
from fbterm.model import Instrument, Option, Right, Stock
from fbterm.model.venue import VenueContract

VENUE = "ib"


def to_ib_contract(inst: Instrument, qualified: VenueContract | None = None) -> IBContract:
    """The IB contract for ``inst``; with ``qualified``, named by its id and listing."""
    c: IBContract
    if isinstance(inst, Option):
        c = IBOption(
            symbol=inst.underlying,
            lastTradeDateOrContractMonth=inst.expiry.strftime("%Y%m%d"),
            strike=inst.strike,
            right=inst.right.value,
            exchange=inst.exchange,
            multiplier=str(inst.multiplier),
            currency=inst.currency,
        )
    else:
        c = IBStock(inst.symbol, inst.exchange, inst.currency)
    if qualified is not None:
        c.conId = qualified.con_id
        c.primaryExchange = qualified.primary_exchange
        c.localSymbol = qualified.local_symbol
        c.tradingClass = qualified.trading_class
    return c


def from_ib_contract(c: IBContract) -> Instrument:
    if c.secType in ("OPT", "FOP"):
        expiry = dt.datetime.strptime(c.lastTradeDateOrContractMonth[:8], "%Y%m%d").date()
        return Option(
            c.symbol,
            Right(c.right[:1]),
            float(c.strike),
            expiry,
            multiplier=int(float(c.multiplier or 100)),
            exchange=c.exchange or "SMART",
            currency=c.currency or "USD",
        )
    return Stock(c.symbol, c.exchange or "SMART", c.currency or "USD")


class ContractBook:
    """Qualified contracts by instrument key: loaded from the store, filled by asking IB."""

    def __init__(self, store: ContractStore | None) -> None:
        self.store = store
        self.known: dict[str, VenueContract] = dict(store.venue_contracts(VENUE)) if store else {}

    def get(self, inst: Instrument) -> VenueContract | None:
        return self.known.get(inst.key)

    async def qualify(self, ib: IB, instruments: Sequence[Instrument], timeout: float) -> list[str]:
        """Qualify what is not known yet; one line per instrument IB does not know."""
        todo = {i.key: i for i in instruments if i.key not in self.known}
        if not todo:
            return []
        contracts = [to_ib_contract(i) for i in todo.values()]
        answers = await asyncio.wait_for(ib.qualifyContractsAsync(*contracts), timeout)
        problems = []
        for inst, answer in zip(todo.values(), answers, strict=True):
            if not isinstance(answer, IBContract) or not answer.conId:
                problems.append(f"{inst.key}: IB has no unique contract for it (not qualified)")
                continue
            vc = VenueContract(
                key=inst.key,
                con_id=int(answer.conId),
                exchange=answer.exchange or "SMART",
                primary_exchange=answer.primaryExchange,
                currency=answer.currency or "USD",
                local_symbol=answer.localSymbol,
                trading_class=answer.tradingClass,
                multiplier=answer.multiplier,
                ts=time.time(),
            )
            self.known[inst.key] = vc
            if self.store is not None:
                self.store.save_venue_contract(VENUE, vc)
        return problems
