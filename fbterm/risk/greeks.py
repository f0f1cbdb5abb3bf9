"""Greeks of positions and orders (Black–Scholes per option, delta one for the rest), summed
per underlying and for the portfolio; the pre-trade limits on portfolio delta and vega."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from fbterm.model import Instrument, Option, Order
from fbterm.model.greeks import GreekRow, Greeks
from fbterm.pricing import bs_delta, bs_gamma, bs_theta, bs_vega, years_to_expiry
from fbterm.risk.stops import money


@dataclass(frozen=True, slots=True)
class Pricing:
    """What pricing one option position needs: the underlying's price and the option's
    implied volatility (None: unknown), at ``ts`` with ``rate``."""

    spot: float
    vol: float | None
    ts: float
    rate: float = 0.0
    delta: float | None = None  # a broker's model delta, preferred when given


def position_greeks(inst: Instrument, quantity: float, p: Pricing) -> Greeks | None:
    """The greeks of ``quantity`` of ``inst``; None for an option that cannot be priced."""
    units = quantity * inst.multiplier
    if not isinstance(inst, Option):
        return Greeks(delta=units, dollar_delta=units * p.spot)
    if p.vol is None or p.vol <= 0 or p.spot <= 0:
        return None
    t = years_to_expiry(inst.expiry, p.ts)
    right = inst.right.value
    d = p.delta if p.delta is not None else bs_delta(right, p.spot, inst.strike, t, p.vol, p.rate)
    return Greeks(
        delta=units * d,
        dollar_delta=units * d * p.spot,
        gamma=units * bs_gamma(p.spot, inst.strike, t, p.vol, p.rate),
        vega=units * bs_vega(p.spot, inst.strike, t, p.vol, p.rate) / 100.0,
        theta=units * bs_theta(right, p.spot, inst.strike, t, p.vol, p.rate) / 365.0,
    )


def greek_rows(items: Iterable[tuple[Instrument, float, Pricing | None]]) -> tuple[GreekRow, ...]:
    """Per-underlying sums of ``(instrument, quantity, pricing)`` (pricing None: unpriced)."""
    sums: dict[str, tuple[Greeks, int, list[str]]] = {}
    for inst, qty, p in items:
        und = inst.underlying
        g0, n, unpriced = sums.get(und, (Greeks(), 0, []))
        g = position_greeks(inst, qty, p) if p is not None else None
        if g is None:
            unpriced.append(inst.key)
        sums[und] = (g0 + g if g is not None else g0, n + 1, unpriced)
    return tuple(GreekRow(und, g, n, tuple(u)) for und, (g, n, u) in sorted(sums.items()))


def total(rows: Iterable[GreekRow]) -> Greeks:
    out = Greeks()
    for r in rows:
        out = out + r.greeks
    return out


class GreekInputs(Protocol):
    """What the gate reads to check the greek limits (the engine's positions and marks)."""

    def portfolio_greeks(self) -> Greeks: ...

    def order_greeks(self, order: Order) -> Greeks | None:
        """The greeks ``order`` adds when it fills; None when it cannot be priced."""


def check_greek_limits(
    now: Greeks, added: Greeks | None, max_delta: float, max_vega: float
) -> str | None:
    """Why an order that adds ``added`` to the portfolio's ``now`` breaks a limit, or None.

    A limit of 0 is off. An order that brings a figure closer to zero always passes (it is
    how an operator gets back under a limit)."""
    if max_delta <= 0 and max_vega <= 0:
        return None
    if added is None:
        return "greeks: the order's option cannot be priced (no volatility) to check the limits"
    after = now + added
    grows = abs(after.dollar_delta) > abs(now.dollar_delta)
    if max_delta > 0 and abs(after.dollar_delta) > max_delta and grows:
        return (
            f"max_portfolio_delta: {money(abs(after.dollar_delta))} "
            f"> {money(max_delta)} (dollar delta)"
        )
    if max_vega > 0 and abs(after.vega) > max_vega and abs(after.vega) > abs(now.vega):
        return f"max_portfolio_vega: {money(abs(after.vega))} > {money(max_vega)} per vol point"
    return None
