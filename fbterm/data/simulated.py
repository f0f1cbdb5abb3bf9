"""The simulated market (the embedded default's data feed) and synthetic bars.

Prices follow geometric Brownian motion whose volatility switches between a calm and a
stressed regime, with occasional jumps; quotes carry a bid/ask spread (wider when stressed)
and trades alternate between the touch. Options are priced with Black-Scholes
(:mod:`fbterm.pricing`) from the underlying, the implied volatility coming from the regime plus
a mild smile.

Everything is deterministic for a seed and a symbol order. Random numbers are drawn in blocks
and whole blocks of the path are computed at once with numpy, so producing a tick is mostly
building the ``Tick`` object.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Sequence
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from fbterm.config import SimulatedMarketConfig
from fbterm.data.bars import INDEX_NAME, bar_timedelta, canonical_bar_size
from fbterm.model import Option, OptionQuote, Right, Tick
from fbterm.pricing import YEAR_SECONDS, bs_delta, bs_price, expiry_ts

# Simulated time is trading time: volatilities are annualised over 252 days of 6.5 hours.
TRADING_SECONDS_PER_YEAR = 252 * 6.5 * 3600
_NY = ZoneInfo("America/New_York")
_STRESSED_SPREAD = 3.0  # spreads widen this much in the stressed regime
_STRESSED_VOLUME = 2.0


# ---------------------------------------------------------------------------- option helpers


def third_friday(year: int, month: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(4 - first.weekday()) % 7 + 14)


def monthly_expiries(after: dt.date, count: int) -> list[dt.date]:
    """The next ``count`` monthly expiries (third Fridays) strictly after ``after``."""
    out: list[dt.date] = []
    y, m = after.year, after.month
    while len(out) < count:
        d = third_friday(y, m)
        if d > after:
            out.append(d)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


def strike_step(spot: float) -> float:
    """A listed-looking strike spacing of about 2% of the price."""
    for step in (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0):
        if step >= spot * 0.02:
            return step
    return 250.0


def smile_vol(base: float, spot: float, strike: float) -> float:
    """The regime's volatility bent into a smile with a downside skew."""
    x = math.log(strike / spot)
    return max(base * (1.0 - 0.25 * x + 0.8 * x * x), 0.5 * base)


# ---------------------------------------------------------------------------- the market


class SimulatedMarket:
    """A seeded multi-symbol quote generator (see the module docstring).

    Each :meth:`next_ticks` call advances simulated time by ``cfg.time_scale /
    cfg.ticks_per_second`` seconds and returns one tick per symbol, in symbol order.
    ``start_ts`` (epoch seconds) defaults to the current time, whole seconds; prices and
    volumes do not depend on it.
    """

    BLOCK = 2048  # ticks per symbol computed at once

    def __init__(
        self,
        symbols: Sequence[str],
        cfg: SimulatedMarketConfig | None = None,
        start_ts: float | None = None,
    ):
        self.symbols = [str(s) for s in symbols]
        if not self.symbols:
            raise ValueError("the simulated market needs at least one symbol")
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"duplicate symbols: {self.symbols}")
        self.cfg = cfg or SimulatedMarketConfig()
        c = self.cfg
        self._index = {s: k for k, s in enumerate(self.symbols)}
        self._rng = np.random.default_rng(c.seed)
        self.dt_seconds = c.time_scale / c.ticks_per_second
        self._dt = self.dt_seconds / TRADING_SECONDS_PER_YEAR
        n = len(self.symbols)
        self._log_mid = np.log(np.array([float(c.prices.get(s, 100.0)) for s in self.symbols]))
        self._regime = np.zeros(n, dtype=bool)
        self._start_ts = float(int(time.time())) if start_ts is None else float(start_ts)
        self._steps = 0  # ticks produced per symbol
        self._row = 0
        self._block: tuple[list[list[float]], ...] = ()
        self._block_regime = np.zeros((0, n), dtype=bool)
        self._block_mid = np.zeros((0, n))
        self._mid_now = np.exp(self._log_mid)
        self._regime_now = self._regime.copy()
        self._ticks = [self._initial_tick(k) for k in range(n)]

    # -- state ---------------------------------------------------------------------------
    @property
    def ts(self) -> float:
        """Simulated time of the latest ticks, epoch seconds."""
        return self._start_ts + self._steps * self.dt_seconds

    def last(self, symbol: str) -> Tick:
        try:
            return self._ticks[self._index[symbol]]
        except KeyError:
            raise KeyError(
                f"{symbol!r} is not in the simulated market ({', '.join(self.symbols)})"
            ) from None

    def mid(self, symbol: str) -> float:
        return float(self._mid_now[self._index[symbol]])

    def regime(self, symbol: str) -> str:
        return "stressed" if self._regime_now[self._index[symbol]] else "calm"

    def volatility(self, symbol: str) -> float:
        """Annualised volatility of the symbol's current regime."""
        stressed = self._regime_now[self._index[symbol]]
        return self.cfg.high_volatility if stressed else self.cfg.volatility

    def _initial_tick(self, k: int) -> Tick:
        mid = float(self._mid_now[k])
        half = mid * self.cfg.spread_bps / 2e4
        bid, ask = _quote(mid - half, mid + half)
        return Tick(self.symbols[k], self._start_ts, bid, ask, round(mid, 2), 0.0)

    # -- ticks ---------------------------------------------------------------------------
    def next_ticks(self) -> list[Tick]:
        """One new tick per symbol, simulated time advanced by one step."""
        if self._row >= len(self._block_mid):
            self._new_block()
        i = self._row
        self._row += 1
        self._steps += 1
        ts = self._start_ts + self._steps * self.dt_seconds
        bids, asks, lasts, vols = (b[i] for b in self._block)
        self._mid_now = self._block_mid[i]
        self._regime_now = self._block_regime[i]
        ticks = list(map(Tick, self.symbols, [ts] * len(bids), bids, asks, lasts, vols))
        self._ticks = ticks
        return ticks

    def _new_block(self) -> None:
        c, rng, n, b = self.cfg, self._rng, len(self.symbols), self.BLOCK
        # Always the same draws in the same order: the path depends only on the seed.
        switch = rng.random((b, n)) < c.regime_switch_prob
        z = rng.standard_normal((b, n))
        jump_hit = rng.random((b, n)) < c.jump_intensity
        jump_z = rng.standard_normal((b, n))
        side = rng.random((b, n)) < 0.5
        vol_z = rng.standard_normal((b, n))

        regime = self._regime ^ (np.cumsum(switch, axis=0) % 2).astype(bool)
        sigma = np.where(regime, c.high_volatility, c.volatility)
        step = -0.5 * sigma * sigma * self._dt + sigma * math.sqrt(self._dt) * z
        step += np.where(jump_hit, jump_z * c.jump_std, 0.0)
        log_mid = self._log_mid + np.cumsum(step, axis=0)
        mid = np.exp(log_mid)
        half = mid * (c.spread_bps / 2e4) * np.where(regime, _STRESSED_SPREAD, 1.0)
        bid = np.maximum(np.floor((mid - half) * 100.0 + 1e-9) / 100.0, 0.01)
        ask = np.maximum(np.ceil((mid + half) * 100.0 - 1e-9) / 100.0, bid)
        last = np.where(side, ask, bid)
        # Volume per tick: lognormal, heavier in stress and on big moves.
        # A liquid name trades its daily volume over a 6.5-hour session; a tick carries what
        # trades in the market time it stands for, so order sizes and fills stay in proportion.
        per_tick = c.daily_volume / 23_400.0 * self.dt_seconds
        base = per_tick * np.where(regime, _STRESSED_VOLUME, 1.0) * (1.0 + 200.0 * np.abs(step))
        volume = np.maximum(np.rint(base * np.exp(0.75 * vol_z)), 1.0)

        self._regime = regime[-1].copy()
        self._log_mid = log_mid[-1].copy()
        self._block_regime = regime
        self._block_mid = mid
        self._block = (bid.tolist(), ask.tolist(), last.tolist(), volume.tolist())
        self._row = 0

    # -- options -------------------------------------------------------------------------
    def option_quote(self, opt: Option) -> OptionQuote:
        """Black-Scholes quote for ``opt`` from the current underlying mid and regime volatility."""
        if opt.underlying not in self._index:
            raise KeyError(f"{opt.underlying!r} is not in the simulated market")
        spot = self.mid(opt.underlying)
        now = self.ts
        t = max(expiry_ts(opt.expiry) - now, 0.0) / YEAR_SECONDS
        iv = smile_vol(self.volatility(opt.underlying), spot, opt.strike)
        r = self.cfg.risk_free_rate
        theo = bs_price(opt.right, spot, opt.strike, t, iv, r)
        delta = bs_delta(opt.right, spot, opt.strike, t, iv, r)
        half = max(0.01, 0.02 * theo) / 2.0
        bid, ask = _quote(max(theo - half, 0.0), theo + half)
        return OptionQuote(opt, now, max(bid, 0.0), max(ask, 0.01), spot, iv, delta)

    def option_chain(
        self, underlying: str, *, expiries: int = 3, strikes: int = 7
    ) -> list[OptionQuote]:
        """Calls and puts for the next ``expiries`` monthly expiries and ``strikes`` strikes
        centred on the money; ordered by expiry, strike, then call before put."""
        spot = self.mid(underlying)
        step = strike_step(spot)
        atm = round(spot / step) * step
        half = strikes // 2
        ks = [atm + (j - half) * step for j in range(strikes)]
        ks = [k for k in ks if k > 0]
        today = dt.datetime.fromtimestamp(self.ts, _NY).date()
        out: list[OptionQuote] = []
        for exp in monthly_expiries(today, expiries):
            for k in ks:
                for right in (Right.CALL, Right.PUT):
                    out.append(self.option_quote(Option(underlying, right, float(k), exp)))
        return out


def _quote(bid: float, ask: float) -> tuple[float, float]:
    """Round a quote outwards to cents."""
    b = math.floor(bid * 100.0 + 1e-9) / 100.0
    a = math.ceil(ask * 100.0 - 1e-9) / 100.0
    return b, max(a, b)


# ---------------------------------------------------------------------------- synthetic bars

_MAX_TS = pd.Timestamp.max.tz_localize("UTC")


def synth_bars(
    n: int,
    *,
    bar_size: str = "1d",
    seed: int = 0,
    start_price: float = 100.0,
    start: str | pd.Timestamp = "2020-01-01",
    symbol: str = "SYN",
    volatility: float = 0.3,
) -> pd.DataFrame:
    """``n`` valid bars in the one shape: a GBM close path with consistent open/high/low.

    Daily bars fall on weekdays, weekly bars on Mondays, intraday bars every ``bar_size``
    around the clock, from ``start`` (naive means UTC). Prices are rounded to 4 decimals.
    The same arguments always give the same frame; ``symbol`` only names it (``df.attrs``).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if start_price <= 0 or volatility < 0:
        raise ValueError("start_price must be > 0 and volatility >= 0")
    c = canonical_bar_size(bar_size)
    step = bar_timedelta(c)
    t0 = pd.Timestamp(start)
    t0 = t0.tz_localize("UTC") if t0.tzinfo is None else t0.tz_convert("UTC")
    unit = c[-1]
    span = step * n * (7 / 5 if c == "1d" else 1)
    if n and t0 + span >= _MAX_TS - pd.Timedelta(days=30):
        raise ValueError(
            f"{n:,} {c} bars from {t0.date()} run past {_MAX_TS.date()}, the last timestamp "
            "pandas can hold; use a smaller bar size or fewer bars"
        )
    if c == "1d":
        idx = pd.bdate_range(t0.normalize(), periods=n, tz="UTC")
        year_frac = 1.0 / 252
    elif unit == "w":
        monday = t0.normalize() - pd.Timedelta(days=t0.weekday())
        idx = pd.date_range(monday, periods=n, freq=f"{int(c[:-1])}W-MON", tz="UTC")
        year_frac = int(c[:-1]) / 52.0
    else:
        idx = pd.date_range(t0, periods=n, freq=step, tz="UTC")
        year_frac = step.total_seconds() / TRADING_SECONDS_PER_YEAR
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((5, n))
    s = volatility * math.sqrt(year_frac)
    log_close = math.log(start_price) + np.cumsum(-0.5 * s * s + s * z[0])
    close = np.exp(log_close)
    prev = np.concatenate(([start_price], close[:-1]))
    open_ = prev * np.exp(0.1 * s * z[1])
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * np.exp(0.5 * s * np.abs(z[2]))
    low = bottom * np.exp(-0.5 * s * np.abs(z[3]))
    volume = np.maximum(np.rint(1e6 * year_frac * 252 * np.exp(0.5 * z[4])), 1.0)
    # Rounding is monotone, so high >= max(open, close) >= min(open, close) >= low survives it.
    cols = {k: np.maximum(np.round(v, 4), 1e-4) for k, v in
            (("open", open_), ("high", high), ("low", low), ("close", close))}  # fmt: skip
    cols["volume"] = volume
    df = pd.DataFrame(cols, index=idx.as_unit("ns"))
    df.index.name = INDEX_NAME
    df.attrs["symbol"] = symbol
    return df
