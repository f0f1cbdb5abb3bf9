"""Live option chains from IB: the listed expiries and strikes (``reqSecDefOptParams``), the
contracts qualified, and a quote per option with IB's model greeks where IB sends them and our
own (implied volatility from the mid, Black–Scholes delta) otherwise. Cached per underlying.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable

from ib_async import IB, Ticker
from ib_async import Contract as IBContract
from ib_async import Stock as IBStock

from fbterm.execution.brokers.ib import BrokerIntegration
from fbterm.execution.brokers.ib.mapping import to_ib_contract
from fbterm.model import Option, OptionQuote, Right
from fbterm.pricing import bs_delta, implied_vol, years_to_expiry


class ChainError(RuntimeError):
    """IB could not give a chain for an underlying (named in the message)."""


def _num(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) and 0 < v < 1e300 else None


class IBOptionChains:
    """Chains for the option strategies (engine thread: the fetch runs on the engine loop)."""

    def __init__(
        self,
        connection: IB | BrokerIntegration,
        *,
        ttl: float = 300.0,
        expiries: int = 3,
        strikes: int = 7,
        timeout: float = 10.0,
        rate: float = 0.04,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = connection
        self.ttl = ttl
        self.expiries = expiries
        self.strikes = strikes
        self.timeout = timeout
        self.rate = rate
        self.clock = clock
        self._cache: dict[str, tuple[float, list[OptionQuote]]] = {}
        self.fetches = 0

    @property
    def ib(self) -> IB:
        return self._conn if isinstance(self._conn, IB) else self._conn.ib

    def cached(self, underlying: str) -> list[OptionQuote] | None:
        """The last chain fetched for ``underlying`` (None: never fetched)."""
        hit = self._cache.get(underlying)
        return hit[1] if hit is not None else None

    def stale(self, underlying: str) -> bool:
        """True when the chain is missing or older than ``ttl`` seconds."""
        hit = self._cache.get(underlying)
        return hit is None or self.clock() - hit[0] > self.ttl

    async def fetch(self, underlying: str, spot: float) -> list[OptionQuote]:
        """The chain around ``spot``: the next ``expiries`` expiries, the ``strikes`` strikes
        nearest the money, calls and puts; cached."""
        ib = self.ib
        self.fetches += 1
        (und,) = await asyncio.wait_for(
            ib.qualifyContractsAsync(IBStock(underlying, "SMART", "USD")), self.timeout
        )
        # ib_async may answer an ambiguous request with a list of candidates: not a stock.
        if not isinstance(und, IBContract) or not und.conId:
            raise ChainError(f"{underlying}: IB has no stock of that name to list options on")
        params = await asyncio.wait_for(
            ib.reqSecDefOptParamsAsync(underlying, "", "STK", und.conId), self.timeout
        )
        if not params:
            raise ChainError(f"{underlying}: IB lists no options")
        p = next((x for x in params if x.exchange == "SMART"), params[0])
        today = dt.datetime.fromtimestamp(self.clock(), dt.UTC).date()
        exps = sorted(
            d
            for d in (dt.datetime.strptime(e[:8], "%Y%m%d").date() for e in p.expirations)
            if d >= today
        )[: self.expiries]
        ks = sorted(sorted(p.strikes, key=lambda k: abs(k - spot))[: self.strikes])
        mult = int(float(p.multiplier or 100))
        options = [
            Option(underlying, right, float(k), exp, multiplier=mult)
            for exp in exps
            for k in ks
            for right in (Right.CALL, Right.PUT)
        ]
        contracts = await asyncio.wait_for(
            ib.qualifyContractsAsync(*(to_ib_contract(o) for o in options)), self.timeout
        )
        listed = [
            (o, c) for o, c in zip(options, contracts, strict=True) if isinstance(c, IBContract)
        ]
        tickers = [(o, ib.reqMktData(c)) for o, c in listed]
        try:
            await self._quoted([t for _, t in tickers])
        finally:
            for _, c in listed:
                ib.cancelMktData(c)
        now = self.clock()
        chain = [q for q in (self._quote(o, t, spot, now) for o, t in tickers) if q is not None]
        self._cache[underlying] = (now, chain)
        return chain

    async def _quoted(self, tickers: list[Ticker]) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if all(_num(t.bid) and _num(t.ask) for t in tickers):
                return
            await asyncio.sleep(0.05)

    def _quote(self, opt: Option, t: Ticker, spot: float, now: float) -> OptionQuote | None:
        bid, ask = _num(t.bid), _num(t.ask)
        if bid is None or ask is None:
            return None
        g = t.modelGreeks
        iv = _num(g.impliedVol) if g is not None else None
        delta = g.delta if g is not None and g.delta is not None else None
        und = (_num(g.undPrice) if g is not None else None) or spot
        if iv is None or delta is None:
            tt = years_to_expiry(opt.expiry, now)
            iv = implied_vol(opt.right.value, (bid + ask) / 2, und, opt.strike, tt, self.rate)
            if iv is None:
                return None
            delta = bs_delta(opt.right.value, und, opt.strike, tt, iv, self.rate)
        return OptionQuote(opt, now, bid, ask, und, iv, float(delta))
