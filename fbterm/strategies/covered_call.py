"""Covered call: hold 100-share lots of the underlying and sell an out-of-the-money call
against each lot; roll the calls when they come within ``roll_days`` of expiry.

Live, the calls come from ``ctx.option_chain(underlying)`` (the broker's or the simulated
market's quotes). In a backtest the backtester passes a chain priced with Black–Scholes from
the bars' realised volatility (:func:`synthetic_chain`); with no chain at all the strategy
builds the same synthetic chain from its own streaming volatility.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import pandas as pd

from fbterm.model import Bar, Option, OptionQuote, Right, Signal, instrument_from_key
from fbterm.strategies._streaming import RollingMean
from fbterm.strategies.base import (
    Param,
    StrategyContext,
    StrategyInterface,
    _latest_target,
    signal_frame,
    target_quantity,
)

YEAR_SECONDS = 365.0 * 86400.0
EXPIRY_HOUR_UTC = 21  # US options stop trading at 16:00 New York


def _ncdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def bs_call(spot: float, strike: float, t_years: float, vol: float, rate: float = 0.0) -> float:
    """Black–Scholes price of a European call (intrinsic value at or after expiry)."""
    if t_years <= 0 or vol <= 0 or spot <= 0:
        return max(spot - strike * math.exp(-rate * max(t_years, 0.0)), 0.0)
    sq = vol * math.sqrt(t_years)
    d1 = (math.log(spot / strike) + (rate + 0.5 * vol * vol) * t_years) / sq
    return spot * _ncdf(d1) - strike * math.exp(-rate * t_years) * _ncdf(d1 - sq)


def bs_call_delta(
    spot: float, strike: float, t_years: float, vol: float, rate: float = 0.0
) -> float:
    if t_years <= 0 or vol <= 0 or spot <= 0:
        return 1.0 if spot > strike else 0.0
    sq = vol * math.sqrt(t_years)
    return _ncdf((math.log(spot / strike) + (rate + 0.5 * vol * vol) * t_years) / sq)


def expiry_ts(expiry: dt.date) -> float:
    return dt.datetime(
        expiry.year, expiry.month, expiry.day, EXPIRY_HOUR_UTC, tzinfo=dt.UTC
    ).timestamp()


def periods_per_year(index: pd.Index) -> float:
    """Bars per year from the bar spacing: 252 trading days, 6.5-hour sessions intraday."""
    if not isinstance(index, pd.DatetimeIndex) or len(index) < 2:
        return 252.0
    step = float(np.median(np.diff(index.as_unit("ns").asi8[: min(len(index), 10_000)]))) / 1e9
    if step <= 0:
        return 252.0
    if step >= 0.9 * 86400:
        return 252.0 * 86400.0 / step if step < 6 * 86400 else 52.0 * 7 * 86400 / step
    return 252.0 * 23400.0 / step


def realised_vol(close: np.ndarray, window: int, per_year: float) -> np.ndarray:
    """Annualised population std of log returns over ``window`` returns (NaN in warm-up)."""
    lr = np.empty_like(close, dtype=float)
    lr[0] = np.nan
    lr[1:] = np.log(close[1:] / close[:-1])
    return pd.Series(lr).rolling(window).std(ddof=0).to_numpy() * math.sqrt(per_year)


def synthetic_chain(
    underlying: str,
    price: float,
    ts: float,
    vol: float,
    rate: float = 0.04,
    *,
    strike_step: float | None = None,
    n_strikes: int = 12,
    weeks: int = 9,
    spread: float = 0.0,
) -> list[OptionQuote]:
    """Weekly Friday calls at strikes from the money upward, priced by Black–Scholes."""
    if not (price > 0 and vol > 0 and math.isfinite(vol)):
        return []
    step = strike_step or _nice_step(price)
    day = dt.datetime.fromtimestamp(ts, dt.UTC).date()
    first_friday = day + dt.timedelta(days=(4 - day.weekday()) % 7)
    base = math.floor(price / step) * step
    out: list[OptionQuote] = []
    for w in range(weeks):
        exp = first_friday + dt.timedelta(days=7 * w)
        t = (expiry_ts(exp) - ts) / YEAR_SECONDS
        if t <= 0:
            continue
        for k in range(n_strikes):
            strike = round(base + k * step, 6)
            if strike <= 0:
                continue
            mid = bs_call(price, strike, t, vol, rate)
            half = mid * spread / 2
            out.append(
                OptionQuote(
                    Option(underlying, Right.CALL, strike, exp),
                    ts,
                    max(mid - half, 0.0),
                    mid + half,
                    price,
                    vol,
                    bs_call_delta(price, strike, t, vol, rate),
                )
            )
    return out


def _nice_step(price: float) -> float:
    for step in (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0):
        if price / step <= 100:
            return step
    return 100.0


def pick_call(
    chain: Sequence[OptionQuote],
    price: float,
    ts: float,
    otm_pct: float,
    days: float,
    min_days: float,
) -> Option | None:
    """The call nearest ``days`` to expiry (at least ``min_days``) with the lowest strike at
    or above ``otm_pct`` % out of the money."""
    floor_strike = price * (1 + otm_pct / 100.0)
    best: tuple[float, float] | None = None
    pick: Option | None = None
    for q in chain:
        o = q.instrument
        if o.right is not Right.CALL or o.strike < floor_strike:
            continue
        dte = (expiry_ts(o.expiry) - ts) / 86400.0
        if dte < min_days:
            continue
        key = (abs(dte - days), o.strike)
        if best is None or key < best:
            best, pick = key, o
    return pick


class CoveredCall(StrategyInterface):
    name: ClassVar[str] = "covered_call"
    description: ClassVar[str] = (
        "Hold 100-share lots, sell OTM calls against them, roll near expiry."
    )
    # The roll depends on the calendar, not on a new target: call execute on every bar.
    execute_every_bar: ClassVar[bool] = True
    params: ClassVar[tuple[Param, ...]] = (
        Param("otm_pct", float, 5.0, "strike at least this % above the price", min=0.0, max=100.0),
        Param("days", float, 30.0, "target days to expiry when selling", min=1.0),
        Param("roll_days", float, 5.0, "buy back and roll at this many days to expiry", min=0.0),
        Param("vol_window", int, 20, "realised-volatility window (bars)", min=2),
        Param("rate", float, 0.04, "risk-free rate for Black–Scholes", min=0.0, max=1.0),
    )

    def check(self) -> None:
        self.reset()

    def warmup(self) -> int:
        return int(self.p["vol_window"]) + 1

    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        close = bars["close"].to_numpy(dtype=float)
        vol = realised_vol(close, self.p["vol_window"], periods_per_year(bars.index))
        target = np.where(np.isnan(vol), np.nan, 1.0)
        return signal_frame(bars.index, target, vol=vol)

    def reset(self) -> None:
        super().reset()
        self._vol = RollingMean(self.p["vol_window"])
        self._prev_close = math.nan
        self._prev_ts = math.nan
        self._step_s: float | None = None
        self._opts: dict[str, Option | None] = {}

    def on_bar(self, bar: Bar) -> float:
        pc = self._prev_close
        if not math.isnan(self._prev_ts) and self._step_s is None:
            self._step_s = bar.ts - self._prev_ts
        self._prev_close, self._prev_ts = bar.close, bar.ts
        if math.isnan(pc) or pc <= 0:
            return math.nan
        self._vol.update(math.log(bar.close / pc))
        return 1.0 if self._vol.ready else math.nan

    def streaming_vol(self) -> float:
        if not self._vol.ready or not self._step_s:
            return math.nan
        idx = pd.DatetimeIndex(pd.to_datetime([0.0, self._step_s], unit="s", utc=True))
        return self._vol.std() * math.sqrt(periods_per_year(idx))

    def _option(self, key: str, symbol: str) -> Option | None:
        if key not in self._opts:
            try:
                inst = instrument_from_key(key)
            except ValueError:
                inst = None
            ok = isinstance(inst, Option) and inst.underlying == symbol and inst.right is Right.CALL
            self._opts[key] = inst if ok else None  # type: ignore[assignment]
        return self._opts[key]

    def execute(self, signals: pd.DataFrame | float, ctx: StrategyContext) -> list[Signal]:
        out: list[Signal] = []
        sym = ctx.symbol
        shares = ctx.position
        target = _latest_target(signals)
        if not math.isnan(target) and self._last_target.get(sym) != target:
            self._last_target[sym] = target
            qty = target_quantity(
                max(target, 0.0),
                ctx.price,
                ctx.equity,
                ctx.sizing,
                commission_fraction=ctx.commission_fraction,
                position=shares,
            )
            shares = math.floor(qty / 100.0) * 100.0
            out += self.orders_to(shares, ctx, reason="covered-call lots")
        want = int(max(shares, 0.0) // 100)
        held = 0
        for key, q in ctx.positions.items():
            if q >= 0 or key == sym:
                continue
            opt = self._option(key, sym)
            if opt is None:
                continue
            dte = (expiry_ts(opt.expiry) - ctx.ts) / 86400.0
            if dte <= self.p["roll_days"] or held + (-q) > want:
                out += self.orders_to(0.0, ctx, instrument=opt, reason=f"roll/close {key}")
            else:
                held += int(-q)
        if held < want:
            chain = self._chain(ctx)
            opt = pick_call(
                chain,
                ctx.price,
                ctx.ts,
                self.p["otm_pct"],
                self.p["days"],
                self.p["roll_days"] + 1.0,
            )
            if opt is not None:
                current = ctx.positions.get(opt.key, 0.0)
                out += self.orders_to(
                    current - (want - held),
                    ctx,
                    instrument=opt,
                    reason=f"sell {want - held} {opt.key}",
                )
        return out

    def _chain(self, ctx: StrategyContext) -> Sequence[OptionQuote]:
        if ctx.option_chain is not None:
            return ctx.option_chain(ctx.symbol)
        return synthetic_chain(ctx.symbol, ctx.price, ctx.ts, self.streaming_vol(), self.p["rate"])
