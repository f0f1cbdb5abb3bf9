"""Instruments <-> IB contracts: one mapping per asset class (the IB half of adding one).

With a qualified contract (:mod:`.contracts`), the IB contract is named by IB's contract id
and listing, never by a bare symbol IB may resolve to another listing.

``avgCost`` at IB is per unit times the multiplier; callers divide by
``instrument.multiplier`` for fbterm's average price (which excludes it).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from ib_async import ContFuture as IBContFuture
from ib_async import Contract as IBContract
from ib_async import Forex as IBForex
from ib_async import Future as IBFuture
from ib_async import Option as IBOption
from ib_async import Stock as IBStock

from fbterm.model import Forex, Future, Instrument, Option, Right, Stock
from fbterm.model.instruments import FUTURE_SPECS
from fbterm.model.venue import VenueContract


def _ib_date(text: str) -> dt.date:
    return dt.datetime.strptime(text[:8], "%Y%m%d").date()


def _mult(c: IBContract, default: int) -> int:
    try:
        return int(float(c.multiplier)) if c.multiplier else default
    except ValueError:
        return default


def to_ib_contract(inst: Instrument, qualified: VenueContract | None = None) -> IBContract:
    """The IB contract for ``inst``; with ``qualified``, named by its id and listing."""
    c = _unqualified(inst)
    if qualified is not None:
        c.conId = qualified.con_id
        c.primaryExchange = qualified.primary_exchange
        c.localSymbol = qualified.local_symbol
        c.tradingClass = qualified.trading_class
    return c


def _unqualified(inst: Instrument) -> IBContract:
    if isinstance(inst, Option):
        return IBOption(
            symbol=inst.underlying,
            lastTradeDateOrContractMonth=inst.expiry.strftime("%Y%m%d"),
            strike=inst.strike,
            right=inst.right.value,
            exchange=inst.exchange,
            multiplier=str(inst.multiplier),
            currency=inst.currency,
        )
    if isinstance(inst, Future):
        if inst.expiry is None:  # the continuous front month: IB serves data for it, not orders
            return IBContFuture(inst.root, inst.exchange, currency=inst.currency)
        return IBFuture(
            symbol=inst.root,
            lastTradeDateOrContractMonth=inst.expiry.strftime("%Y%m%d"),
            exchange=inst.exchange,
            multiplier=str(inst.multiplier),
            currency=inst.currency,
        )
    if isinstance(inst, Forex):
        return IBForex(pair=inst.base + inst.quote, exchange=inst.exchange)
    return IBStock(inst.symbol, inst.exchange, inst.currency)


def _option(c: IBContract) -> Instrument:
    return Option(
        c.symbol,
        Right(c.right[:1]),
        float(c.strike),
        _ib_date(c.lastTradeDateOrContractMonth),
        multiplier=_mult(c, 100),
        exchange=c.exchange or "SMART",
        currency=c.currency or "USD",
    )


def _future(c: IBContract) -> Instrument:
    spec = FUTURE_SPECS.get(c.symbol.upper())
    # Positions arrive without an exchange; a known root has it in its spec.
    exchange = c.exchange or c.primaryExchange or (spec.exchange if spec else "SMART")
    return Future(
        c.symbol,
        _ib_date(c.lastTradeDateOrContractMonth) if c.lastTradeDateOrContractMonth else None,
        multiplier=_mult(c, spec.multiplier if spec else 1),
        exchange=exchange,
        currency=c.currency or "",
    )


def _forex(c: IBContract) -> Instrument:
    # IB names a pair by its base currency (symbol) and quote currency (currency).
    return Forex(c.symbol, c.currency, exchange=c.exchange or "IDEALPRO")


def _stock(c: IBContract) -> Instrument:
    return Stock(c.symbol, c.exchange or "SMART", c.currency or "USD")


FROM_IB: dict[str, Callable[[IBContract], Instrument]] = {
    "OPT": _option,
    "FOP": _option,
    "FUT": _future,
    "CONTFUT": _future,
    "CASH": _forex,
    "STK": _stock,
}


def from_ib_contract(c: IBContract) -> Instrument:
    """The instrument IB means by ``c`` (a stock for a security type fbterm does not model)."""
    return FROM_IB.get(c.secType, _stock)(c)
