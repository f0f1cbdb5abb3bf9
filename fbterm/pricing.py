"""Black–Scholes prices and greeks of European options, and when listed options expire.

Pure functions of floats, importing nothing from fbterm, so the simulated market, the covered
call strategy and the backtester price options identically.

Units: ``t`` is time to expiry in years of calendar time (:data:`YEAR_SECONDS`, see
:func:`years_to_expiry`); ``vol`` and ``rate`` are annual, ``rate`` continuously compounded.
Prices and greeks are per share (multiply by the contract multiplier for money). ``vega`` is per
1.00 of volatility (divide by 100 for "per vol point"); ``theta`` is the value's change per year
of time passing (divide by 365 for "per day").

At or past expiry (``t <= 0``), at zero volatility and for a non-positive spot the option is
worth its discounted intrinsic value ``max(S - K e^(-rT), 0)`` (calls) and its delta is that of
the forward: 1 (or -1 for a put) when it finishes in the money on the forward
``S > K e^(-rT)``, else 0. Exactly at the money both deltas are 0: the option ends worthless.
"""

from __future__ import annotations

import datetime as dt
import math
from functools import lru_cache
from zoneinfo import ZoneInfo

# Time to expiry is calendar time: options decay over weekends too.
YEAR_SECONDS = 365.0 * 86400.0
EXCHANGE_TZ = ZoneInfo("America/New_York")
EXPIRY_TIME = dt.time(16, 0)  # US equity options stop trading at the 16:00 close


@lru_cache(maxsize=256)
def expiry_ts(expiry: dt.date) -> float:
    """Epoch seconds of the exchange close (16:00 New York, EST or EDT) on ``expiry``."""
    return dt.datetime.combine(expiry, EXPIRY_TIME, tzinfo=EXCHANGE_TZ).timestamp()


def years_to_expiry(expiry: dt.date, ts: float) -> float:
    """Calendar years from epoch ``ts`` to the close on ``expiry`` (negative once expired)."""
    return (expiry_ts(expiry) - ts) / YEAR_SECONDS


def _is_call(right: str) -> bool:
    # Accepts fbterm.model.Right (a StrEnum of "C"/"P") and spellings like "call" or "Put".
    r = str(right).upper()[:1]
    if r not in ("C", "P"):
        raise ValueError(f"option right must be a call or a put, got {right!r}")
    return r == "C"


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _npdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _degenerate(spot: float, t: float, vol: float) -> bool:
    """No diffusion left to price: value and delta are those of the forward."""
    return t <= 0 or vol <= 0 or spot <= 0


def _d1(spot: float, strike: float, t: float, vol: float, rate: float) -> float:
    return (math.log(spot / strike) + (rate + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))


def _discounted_strike(strike: float, t: float, rate: float) -> float:
    return strike * math.exp(-rate * max(t, 0.0))


# ================================================================================= prices


def bs_call(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """Black–Scholes price of a European call."""
    if _degenerate(spot, t, vol):
        return max(spot - _discounted_strike(strike, t, rate), 0.0)
    d1 = _d1(spot, strike, t, vol, rate)
    d2 = d1 - vol * math.sqrt(t)
    return spot * _ncdf(d1) - strike * math.exp(-rate * t) * _ncdf(d2)


def bs_put(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """Black–Scholes price of a European put."""
    if _degenerate(spot, t, vol):
        return max(_discounted_strike(strike, t, rate) - spot, 0.0)
    d1 = _d1(spot, strike, t, vol, rate)
    d2 = d1 - vol * math.sqrt(t)
    return strike * math.exp(-rate * t) * _ncdf(-d2) - spot * _ncdf(-d1)


def bs_price(
    right: str, spot: float, strike: float, t: float, vol: float, rate: float = 0.0
) -> float:
    """:func:`bs_call` or :func:`bs_put` by ``right`` ("C"/"P", a Right, "call"/"put")."""
    return (bs_call if _is_call(right) else bs_put)(spot, strike, t, vol, rate)


# ================================================================================= greeks


def bs_call_delta(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """dC/dS, in [0, 1]."""
    if _degenerate(spot, t, vol):
        # Compare with the discounted strike: the forward, not the spot, decides the payoff.
        return 1.0 if spot > _discounted_strike(strike, t, rate) else 0.0
    return _ncdf(_d1(spot, strike, t, vol, rate))


def bs_put_delta(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """dP/dS, in [-1, 0]."""
    if _degenerate(spot, t, vol):
        return -1.0 if spot < _discounted_strike(strike, t, rate) else 0.0
    return _ncdf(_d1(spot, strike, t, vol, rate)) - 1.0


def bs_delta(
    right: str, spot: float, strike: float, t: float, vol: float, rate: float = 0.0
) -> float:
    """:func:`bs_call_delta` or :func:`bs_put_delta` by ``right``."""
    return (bs_call_delta if _is_call(right) else bs_put_delta)(spot, strike, t, vol, rate)


def bs_gamma(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """d²V/dS², the same for a call and a put; 0 where the value is piecewise linear."""
    if _degenerate(spot, t, vol):
        return 0.0
    return _npdf(_d1(spot, strike, t, vol, rate)) / (spot * vol * math.sqrt(t))


def bs_vega(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """dV/dvol per 1.00 of volatility, the same for a call and a put."""
    if _degenerate(spot, t, vol):
        return 0.0
    return spot * _npdf(_d1(spot, strike, t, vol, rate)) * math.sqrt(t)


def bs_call_theta(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """dC/d(time passing) per year: ``-dC/dt``."""
    if t <= 0:
        return 0.0
    disc = strike * math.exp(-rate * t)
    if vol <= 0 or spot <= 0:
        # Worth S - K e^(-rT) if in the money: only the discount accrues.
        return -rate * disc if spot > disc else 0.0
    d1 = _d1(spot, strike, t, vol, rate)
    d2 = d1 - vol * math.sqrt(t)
    decay = -spot * _npdf(d1) * vol / (2.0 * math.sqrt(t))
    return decay - rate * disc * _ncdf(d2)


def bs_put_theta(spot: float, strike: float, t: float, vol: float, rate: float = 0.0) -> float:
    """dP/d(time passing) per year: ``-dP/dt``."""
    if t <= 0:
        return 0.0
    disc = strike * math.exp(-rate * t)
    if vol <= 0 or spot <= 0:
        return rate * disc if spot < disc else 0.0
    d1 = _d1(spot, strike, t, vol, rate)
    d2 = d1 - vol * math.sqrt(t)
    decay = -spot * _npdf(d1) * vol / (2.0 * math.sqrt(t))
    return decay + rate * disc * _ncdf(-d2)


def bs_theta(
    right: str, spot: float, strike: float, t: float, vol: float, rate: float = 0.0
) -> float:
    """:func:`bs_call_theta` or :func:`bs_put_theta` by ``right``."""
    return (bs_call_theta if _is_call(right) else bs_put_theta)(spot, strike, t, vol, rate)


__all__ = [
    "EXCHANGE_TZ",
    "EXPIRY_TIME",
    "YEAR_SECONDS",
    "bs_call",
    "bs_call_delta",
    "bs_call_theta",
    "bs_delta",
    "bs_gamma",
    "bs_price",
    "bs_put",
    "bs_put_delta",
    "bs_put_theta",
    "bs_theta",
    "bs_vega",
    "expiry_ts",
    "years_to_expiry",
]


def implied_vol(
    right: str, price: float, spot: float, strike: float, t: float, rate: float = 0.0
) -> float | None:
    """The volatility at which Black–Scholes gives ``price`` (bisection on [0.1%, 500%]);
    None when no volatility in that range does (a price below intrinsic or above the spot)."""
    if price <= 0 or spot <= 0 or t <= 0:
        return None
    lo, hi = 0.001, 5.0
    f_lo = bs_price(right, spot, strike, t, lo, rate) - price
    f_hi = bs_price(right, spot, strike, t, hi, rate) - price
    if f_lo > 0 or f_hi < 0:
        return None
    for _ in range(80):  # the price is increasing in volatility
        mid = (lo + hi) / 2
        if bs_price(right, spot, strike, t, mid, rate) < price:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-7:
            break
    return (lo + hi) / 2
