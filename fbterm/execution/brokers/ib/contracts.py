"""The qualified contracts orders are sent with (the mapping itself: :mod:`.mapping`).

An order names its contract by IB's contract id and primary exchange, never by a bare
``Stock(symbol, "SMART", "USD")`` that IB may resolve to another listing. Contracts are
qualified once (``reqContractDetails``) and kept in the journal, so a restart does not ask again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from ib_async import IB
from ib_async import Contract as IBContract

from fbterm.execution.brokers.base import ContractStore
from fbterm.execution.brokers.ib.mapping import from_ib_contract, to_ib_contract
from fbterm.model import Instrument
from fbterm.model.venue import VenueContract

VENUE = "ib"


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


__all__ = ["VENUE", "ContractBook", "from_ib_contract", "to_ib_contract"]
