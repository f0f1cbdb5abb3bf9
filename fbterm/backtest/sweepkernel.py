"""The sweep engine's kernel: many parameter sets of one strategy on one bar set at once.

What a grid shares is computed once: the bars, each distinct indicator window (a strategy
with a registered target kernel, like ``sma_cross``, reads its moving averages from a cache),
the fill prices and the period ends the Sharpe ratio samples. Then the parameter sets are
simulated together, one numpy step per order across the whole chunk ("lockstep"), with the
array twins of the fast path's rules (:func:`fbterm.strategies.base.sizer_array`,
:func:`fbterm.execution.costs.commissions`, :func:`fbterm.execution.brokers.fills.market_prices`),
so every set's fills are those :func:`fbterm.backtest.fast.plain_loop` books, bit for bit.
The headline metrics come from the fills with the equity curve built as
:func:`fbterm.backtest.result.build_result` builds it; tests hold every row equal to a full
backtest's metrics.

Strategies the kernel cannot simulate (their own ``execute``, options every bar) run as full
backtests, one per parameter set.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fbterm import stats
from fbterm.backtest.backtester import CustomBacktester
from fbterm.backtest.book import Book
from fbterm.backtest.fast import may_exceed, plain_loop
from fbterm.backtest.inputs import BacktestError, make_commission, make_sizing, prepare_bars
from fbterm.backtest.metrics import period_points
from fbterm.backtest.trades import round_trip_arrays, simple_round_trips, trades_from_fills
from fbterm.backtest.venue import BarVenue
from fbterm.execution.brokers.fills import market_prices
from fbterm.execution.costs import CommissionModel, commissions
from fbterm.sessions import DEFAULT_CALENDAR
from fbterm.strategies import create_strategy, load_strategy_class
from fbterm.strategies._streaming import sma
from fbterm.strategies.base import (
    Sizing,
    StrategyError,
    StrategyInterface,
    sizer_array,
)
from fbterm.strategies.sma_cross import SmaCross

SWEEP_KEYS = (
    "return_pct",
    "sharpe",
    "sortino",
    "max_drawdown_pct",
    "trades",
    "win_rate_pct",
    "equity_final",
    "sqn",
    "profit_factor",
    "exposure_pct",
)

# Lockstep state per chunk is about 40 bytes per (order step, parameter set): chunks are cut
# to stay under this, so 10,000 sets over 100k bars run in a few hundred MB.
CHUNK_BYTES = 160_000_000
# Below this many sets a plain Python loop per set beats numpy's per-call overhead (measured:
# at 100 sets of ~4k orders each the loop is still ahead; at 500 the lockstep is far ahead).
LOCKSTEP_MIN = 128


@dataclass
class SweepContext:
    """Everything a grid shares: bars, prices, rules, and the indicator cache."""

    bars: pd.DataFrame
    strategy: str
    cash: float
    commission: CommissionModel
    sizing: Sizing
    symbol: str = "SYM"
    # The exchange whose sessions bucket intraday returns, as the full backtest's default.
    calendar: str | None = DEFAULT_CALENDAR
    cache: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.cls = load_strategy_class(self.strategy)
        self.n = len(self.bars)
        self.close = self.bars["close"].to_numpy(dtype=np.float64)
        self.open = self.bars["open"].to_numpy(dtype=np.float64)
        self.fill_px = market_prices(self.open)
        self.ends, self.per_year = period_points(self.bars.index, self.calendar)
        self.venue = BarVenue(
            self.bars,
            symbol=self.symbol,
            strategy_id=self.strategy,
            commission=self.commission,
            risk_gate=None,
            rate=0.04,
            option_vol_window=20,
        )
        self.cf = self.venue.cf
        # The lockstep's array twins have no margin cut and no per-share fee fit: sizes that
        # can cost more than the equity, or a fee sizing cannot net in closed form, take the
        # fast path's own loop per set instead (exact, slower).
        self.lockstep = self.venue.fee is None and not may_exceed(self.sizing)
        self.size = sizer_array(self.sizing, commission_fraction=self.cf)
        self.kernel = TARGET_KERNELS.get(self.cls)
        self._buffers: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self.reenter = bool(getattr(self.cls, "reenter_on_repeat", False))
        base = StrategyInterface.execute
        # The lockstep is the fast path's plain loop: the base execute, no every-bar options.
        self.vectorised = self.cls.execute is base and not getattr(
            self.cls, "execute_every_bar", False
        )

    def buffers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Three bar-length work arrays (segment ids, equity, scratch), made once."""
        if self._buffers is None:
            self._buffers = (np.zeros(self.n, dtype=np.int64), np.zeros(self.n), np.zeros(self.n))
        return self._buffers

    def sma(self, n: int) -> np.ndarray:
        """The close's simple moving average over ``n`` bars, computed once per sweep."""
        key = ("sma", n)
        out = self.cache.get(key)
        if out is None:
            out = self.cache[key] = sma(self.bars["close"], n).to_numpy(dtype=np.float64)
        return out


def make_context(
    bars: pd.DataFrame,
    strategy: str,
    *,
    cash: float = 10_000.0,
    commission: float | str | CommissionModel | None = 0.0,
    sizing: Sizing | str | None = "all_in",
    symbol: str = "SYM",
) -> SweepContext:
    if not (cash > 0 and math.isfinite(cash)):
        raise BacktestError(f"cash must be > 0, got {cash!r}")
    return SweepContext(
        prepare_bars(bars),
        strategy,
        float(cash),
        make_commission(commission),
        make_sizing(sizing),
        symbol,
    )


# ---------------------------------------------------------------------------- targets


Targets = tuple[np.ndarray, np.ndarray]
"""A set's targets as (bars where the target is not NaN, the targets there)."""


def _sma_cross_targets(ctx: SweepContext, strat: StrategyInterface) -> Targets:
    """:func:`fbterm.strategies.sma_cross.crossover_targets` from the cached averages, as the
    bars where it is not NaN: ``f < s`` is ``f - s < 0`` in floating point (a difference is
    zero only between equal numbers, and keeps the sign), so one subtraction serves the four
    comparisons, and no million-bar NaN array is built per set."""
    d = ctx.sma(int(strat.p["fast"])) - ctx.sma(int(strat.p["slow"]))
    above = d > 0
    below = d < 0
    up = below[:-1] & above[1:]
    cross = np.flatnonzero(up | (above[:-1] & below[1:]))
    return cross + 1, np.where(up[cross], 1.0, -1.0)


TargetKernel = Callable[[SweepContext, StrategyInterface], Targets]
# Strategies whose targets are built from cached indicators (the same functions ``analyze``
# calls, so the targets are identical); any other strategy's ``analyze`` runs per set.
TARGET_KERNELS: dict[type[StrategyInterface], TargetKernel] = {SmaCross: _sma_cross_targets}


def targets_of(ctx: SweepContext, strat: StrategyInterface) -> Targets:
    if ctx.kernel is not None:
        return ctx.kernel(ctx, strat)
    sig = strat.analyze(ctx.bars)
    if "target" not in sig or len(sig) != ctx.n:
        raise BacktestError(
            f"strategy {strat.strategy_id}: analyze must return a 'target' column for every bar"
        )
    target = sig["target"].to_numpy(dtype=np.float64)
    nn = np.flatnonzero(~np.isnan(target))
    return nn, target[nn]


def events_of(targets: Targets, reenter: bool, n: int) -> Targets:
    """The bars whose target acts and their targets (as fast.event_loop picks them)."""
    nn, vals = targets
    if len(nn) and not reenter:
        keep = np.empty(len(nn), dtype=bool)
        keep[0] = True
        keep[1:] = vals[1:] != vals[:-1]
        nn, vals = nn[keep], vals[keep]
    live = nn + 1 < n
    return nn[live], vals[live]


# --------------------------------------------------------------------------- simulation

Fills = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # bar, quantity, price, fee


def scalar_fills(ctx: SweepContext, events: Targets) -> Fills:
    """One set's fills through the fast path's own plain loop."""
    book = Book(ctx.cash)
    target = np.full(ctx.n, np.nan)
    target[events[0]] = events[1]
    plain_loop(ctx.venue, book, ctx.sizing, ctx.reenter, target, events[0].tolist())
    return (
        np.asarray(book.fb, dtype=np.int64),
        np.asarray(book.fq, dtype=np.float64),
        np.asarray(book.fp, dtype=np.float64),
        np.asarray(book.fc, dtype=np.float64),
    )


def lockstep_fills(ctx: SweepContext, events: list[Targets]) -> list[Fills]:
    """Every set's fills, simulated together: step k is every set's k-th event.

    Sets are ordered by event count, longest first, so the sets still running at step k are
    a prefix and every operation works on a view. Each line mirrors a line of
    :func:`fbterm.backtest.fast.plain_loop` with its array twin.
    """
    p_n = len(events)
    counts = np.array([len(e[0]) for e in events], dtype=np.int64)
    order = np.argsort(-counts, kind="stable")
    k_max = int(counts.max()) if p_n else 0
    if k_max == 0:
        empty = np.zeros(0)
        return [(np.zeros(0, dtype=np.int64), empty, empty, empty) for _ in range(p_n)]
    bar = np.zeros((k_max, p_n), dtype=np.int64)
    tgt = np.zeros((k_max, p_n), dtype=np.float64)
    for j, p in enumerate(order):
        k = counts[p]
        bar[:k, j] = events[p][0] + 1
        tgt[:k, j] = events[p][1]
    active = p_n - np.cumsum(np.bincount(counts, minlength=k_max + 1))[:k_max]
    q1 = np.zeros((k_max, p_n))
    f1 = np.zeros((k_max, p_n))
    extra: list[tuple[int, int, float, float]] = []  # re-entry's second fill: k, j, qty, fee
    cash = np.full(p_n, ctx.cash)
    pos = np.zeros(p_n)
    last = np.full(p_n, np.nan)
    o, mp, size, model, cf = ctx.open, ctx.fill_px, ctx.size, ctx.commission, ctx.cf
    reenter = ctx.reenter
    same_px = bool(np.array_equal(o, mp))
    errstate = np.errstate(invalid="ignore", divide="ignore")
    errstate.__enter__()  # once for the loop: the sizer divides by prices of idle sets
    for k in range(k_max):
        a = int(active[k])
        fb = bar[k, :a]
        t = tgt[k, :a]
        spx = o[fb]
        px = spx if same_px else mp[fb]
        c = cash[:a]
        q = pos[:a]
        lt = last[:a]
        chg = t != lt
        qty = size(t, spx, c + q * spx, q)
        d = qty - q
        ad = np.abs(d)
        do = chg & (ad >= 1e-9)
        fee = commissions(model, ad, px)
        if do.all():  # the common step: every set acts on a new target
            cash[:a] = c - (d * px + fee)
            pos[:a] = qty
            q1[k, :a] = d
            f1[k, :a] = fee
            last[:a] = t
            continue
        cash[:a] = np.where(do, c - (d * px + fee), c)
        pos[:a] = np.where(do, qty, q)
        q1[k, :a] = np.where(do, d, 0.0)
        f1[k, :a] = np.where(do, fee, 0.0)
        last[:a] = np.where(chg, t, lt)
        if reenter:
            again = ~chg & (t != 0)
            if again.any():
                for j in np.flatnonzero(again).tolist():
                    extra.extend(
                        _reenter_one(
                            ctx,
                            k,
                            j,
                            float(t[j]),
                            float(spx[j]),
                            float(px[j]),
                            cash,
                            pos,
                            q1,
                            f1,
                            cf,
                        )
                    )
    errstate.__exit__(None, None, None)
    out: list[Fills] = [(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0))] * p_n
    by_set: dict[int, list[tuple[int, float, float]]] = {}
    for k, j, qq, ff in extra:
        by_set.setdefault(j, []).append((k, qq, ff))
    for j, p in enumerate(order):
        k = int(counts[p])
        qj = q1[:k, j]
        filled = qj != 0
        fb_j = bar[:k, j]
        pxj = mp[fb_j]
        fills: Fills = (fb_j[filled], qj[filled], pxj[filled], f1[:k, j][filled])
        if j in by_set:
            fills = _with_extra(fills, bar[:k, j], mp, q1[:k, j], f1[:k, j], by_set[j])
        out[int(p)] = fills
    return out


def _reenter_one(
    ctx: SweepContext,
    k: int,
    j: int,
    t: float,
    spx: float,
    px: float,
    cash: np.ndarray,
    pos: np.ndarray,
    q1: np.ndarray,
    f1: np.ndarray,
    cf: float,
) -> list[tuple[int, int, float, float]]:
    """A repeated target of a re-entering strategy: close, then open afresh (plain_loop's
    re-entry branch, for one set; repeats are rare, so this is scalar)."""
    from fbterm.strategies.base import reentry_equity, sizer

    c, p = float(cash[j]), float(pos[j])
    fee_of = ctx.commission.__call__
    eq = reentry_equity(c + p * spx, p, spx, cf)
    legs: list[tuple[float, float]] = []
    if p:
        fee = fee_of(abs(p), px)
        c -= -p * px + fee
        legs.append((-p, fee))
        p = 0.0
    qty = sizer(ctx.sizing, commission_fraction=cf)(t, spx, eq, 0.0)
    if qty:
        fee = fee_of(abs(qty), px)
        c -= qty * px + fee
        p = qty
        legs.append((qty, fee))
    cash[j], pos[j] = c, p
    if not legs:
        return []
    q1[k, j], f1[k, j] = legs[0]
    return [(k, j, legs[1][0], legs[1][1])] if len(legs) > 1 else []


def _with_extra(
    fills: Fills,
    bars: np.ndarray,
    mp: np.ndarray,
    q1: np.ndarray,
    f1: np.ndarray,
    extra: list[tuple[int, float, float]],
) -> Fills:
    """The set's fills with each re-entry's second fill right after its first."""
    ks = np.array([k for k, _, _ in extra], dtype=np.int64)
    filled = np.flatnonzero(q1 != 0)
    order = np.argsort(np.r_[2 * filled, 2 * ks + 1], kind="stable")
    fb = np.r_[bars[filled], bars[ks]][order]
    fq = np.r_[q1[filled], [q for _, q, _ in extra]][order]
    fc = np.r_[f1[filled], [f for _, _, f in extra]][order]
    return fb, fq, mp[fb], fc


# ------------------------------------------------------------------------------ metrics


def fill_metrics(ctx: SweepContext, fills: Fills) -> dict[str, Any] | None:
    """The headline metrics of one set from its fills, computed as a full backtest does:
    the equity curve as build_result builds it, the statistics as performance_metrics.
    None when the equity reaches 0: the full backtest closes the account out there (the
    margin rule), which only it simulates."""
    fb, fq, fp, fc = fills
    n, close = ctx.n, ctx.close
    m = len(fb)
    if m:
        brk = np.empty(m, dtype=bool)
        brk[0] = True
        brk[1:] = fb[1:] != fb[:-1]
        ub = fb[brk]
        ids = np.cumsum(brk) - 1
        cash_u = ctx.cash - np.cumsum(np.bincount(ids, weights=fq * fp * 1.0 + fc))
        pos_u: np.ndarray = np.cumsum(np.bincount(ids, weights=fq))
        pos_u[np.abs(pos_u) < 1e-9] = 0.0
        # Segment 0 is before the first fill; segment j + 1 runs from fill bar j.
        mu = len(ub)
        edges = np.empty(mu + 2, dtype=np.int64)
        edges[0], edges[1:-1], edges[-1] = 0, ub, n
        lengths = np.diff(edges)
        held_seg = np.empty(mu + 1)
        held_seg[0], held_seg[1:] = 0.0, pos_u
        cash_seg = np.empty(mu + 1)
        cash_seg[0], cash_seg[1:] = ctx.cash, cash_u
        held = int(lengths[held_seg != 0].sum())
        eq = np.repeat(cash_seg, lengths)
        eq += np.repeat(held_seg, lengths) * close
    else:
        ub = np.zeros(0, dtype=np.int64)
        pos_u = np.zeros(0, dtype=np.float64)
        eq = np.full(n, ctx.cash)
        held = 0
    if float(eq.min()) <= 0:
        return None
    row: dict[str, Any] = {}
    e0, e1 = float(eq[0]), float(eq[-1])
    row["return_pct"] = (e1 - e0) / e0 * 100
    sampled = eq if ctx.ends is None else eq[ctx.ends]
    r = stats.finite(stats.simple_returns(sampled))
    row["sharpe"] = stats.sharpe_ratio(r, ctx.per_year)
    row["sortino"] = stats.sortino_ratio(r, ctx.per_year)
    row["max_drawdown_pct"] = -max_drawdown(eq) * 100
    pnl, exit_bars = _trade_pnls(ctx, fills)
    nt = len(pnl)
    row["trades"] = nt
    if len(exit_bars):
        # One exit per fill bar in the simple case: already sorted and distinct.
        rising = len(exit_bars) < 2 or bool((exit_bars[1:] > exit_bars[:-1]).all())
        xb = exit_bars if rising else np.unique(exit_bars)
        at = np.searchsorted(ub, xb, side="right") - 1
        flat = np.where(at >= 0, pos_u[np.maximum(at, 0)], 0.0) == 0
        held += int(flat.sum())
    row["win_rate_pct"] = float((pnl > 0).mean()) * 100 if nt else math.nan
    row["equity_final"] = e1
    sd = float(np.std(pnl, ddof=1)) if nt > 1 else math.nan
    row["sqn"] = math.sqrt(nt) * float(pnl.mean()) / sd if nt > 1 and sd > 0 else math.nan
    gross_win = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    row["profit_factor"] = gross_win / gross_loss if gross_loss > 0 else math.nan
    row["exposure_pct"] = float(np.float64(held) / n * 100)
    return row


def max_drawdown(eq: np.ndarray, block: int = 1024) -> float:
    """``max(stats.drawdown_series(eq))``, exactly, without a running maximum over every bar
    (numpy's accumulate is the slowest pass of a sweep).

    The smallest ``e / peak`` decides it (``1 - x`` falls as ``x`` rises, and rounding keeps
    that order). Per block of bars, ``min / max(peak before, block max)`` bounds every ratio
    in the block from below (rounding is monotone too), so only blocks whose bound beats the
    best ratio found so far are computed bar by bar, most promising first.
    """
    n = len(eq)
    if n == 0:
        return 0.0
    if eq[0] <= 0 or n < 4 * block:
        return float(stats.drawdown_series(eq).max())
    nb = n // block
    body = eq[: nb * block].reshape(nb, block)
    bmax = body.max(axis=1)
    bmin = body.min(axis=1)
    before = np.empty(nb)
    before[0] = -np.inf
    np.maximum.accumulate(bmax[:-1], out=before[1:])
    bound = bmin / np.maximum(before, bmax)
    best = 1.0
    for b in np.argsort(bound, kind="stable").tolist():
        if bound[b] >= best:
            break
        peak = np.maximum(np.maximum.accumulate(body[b]), before[b])
        best = min(best, float((body[b] / peak).min()))
    tail = eq[nb * block :]
    if len(tail):
        peak = np.maximum(np.maximum.accumulate(tail), max(float(bmax.max()), 0.0))
        best = min(best, float((tail / peak).min()))
    return max(1.0 - best, 0.0)


def _trade_pnls(ctx: SweepContext, fills: Fills) -> tuple[np.ndarray, np.ndarray]:
    fb, fq, fp, fc = fills
    if not len(fb):
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    p1 = np.cumsum(fq)
    p1[np.abs(p1) < 1e-9] = 0.0
    p0 = np.empty_like(p1)
    p0[0], p0[1:] = 0.0, p1[:-1]
    if simple_round_trips(p0, p1):
        _, ci, _, pnl, _, _ = round_trip_arrays(p0, p1, np.abs(fq), fp, fc, 1.0)
        return pnl, fb[ci]
    frame = pd.DataFrame(
        {
            "bar": fb,
            "time": ctx.bars.index[fb],
            "instrument": ctx.symbol,
            "quantity": fq,
            "price": fp,
            "commission": fc,
            "reason": "",
        }
    )
    trades = trades_from_fills(frame, ctx.bars.index, {ctx.symbol: 1})
    return trades["pnl"].to_numpy(dtype=float), trades["exit_bar"].to_numpy(dtype=np.int64)


# --------------------------------------------------------------------------------- runs


def full_row(ctx: SweepContext, params: dict[str, Any]) -> dict[str, Any]:
    """One set as a full backtest (strategies the kernel cannot simulate)."""
    row: dict[str, Any] = dict(params)
    try:
        strat = create_strategy(ctx.strategy, None, params)
        res = CustomBacktester(
            ctx.bars,
            strat,
            cash=ctx.cash,
            commission=ctx.commission,
            sizing=ctx.sizing,
            symbol=ctx.symbol,
            calendar=ctx.calendar,
        ).run_backtest()
    except (StrategyError, BacktestError) as e:
        row["error"] = str(e)
        return row
    for k in SWEEP_KEYS:
        v = res.metrics.get(k)
        row[k] = float(v) if isinstance(v, int | float) else v
    return row


def run_points(ctx: SweepContext, grid: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The metrics row of every parameter set in ``grid`` (or the reason it cannot run)."""
    if not ctx.vectorised:
        return [full_row(ctx, p) for p in grid]
    rows: list[dict[str, Any]] = [dict(p) for p in grid]
    ok: list[int] = []
    events: list[Targets] = []
    for i, p in enumerate(grid):
        try:
            strat = create_strategy(ctx.strategy, None, p)
            need = strat.warmup()
            if need > ctx.n:
                raise BacktestError(
                    f"window longer than the data: {strat.name or type(strat).__name__} "
                    f"needs {need} bars, the data has {ctx.n}"
                )
            targets = targets_of(ctx, strat)
        except (StrategyError, BacktestError) as e:
            rows[i]["error"] = str(e)
            continue
        except Exception as e:
            rows[i]["error"] = f"strategy {ctx.strategy} raised {type(e).__name__}: {e}"
            continue
        ok.append(i)
        events.append(events_of(targets, ctx.reenter, ctx.n))
    for lo, hi in _chunks([len(e[0]) for e in events]):
        if hi - lo >= LOCKSTEP_MIN and ctx.lockstep:
            fills = lockstep_fills(ctx, events[lo:hi])
        else:
            fills = [scalar_fills(ctx, events[j]) for j in range(lo, hi)]
        for j, f in zip(range(lo, hi), fills, strict=True):
            metrics = fill_metrics(ctx, f)
            if metrics is None:
                rows[ok[j]] = full_row(ctx, grid[ok[j]])
            else:
                rows[ok[j]].update(metrics)
    return rows


def _chunks(counts: list[int]) -> list[tuple[int, int]]:
    """Cut the sets into runs whose lockstep state fits in CHUNK_BYTES."""
    out: list[tuple[int, int]] = []
    lo = 0
    k_max = 0
    for i, k in enumerate(counts):
        k_max = max(k_max, k)
        if (i + 1 - lo) * (k_max + 1) * 40 > CHUNK_BYTES and i > lo:
            out.append((lo, i))
            lo, k_max = i, k
    if lo < len(counts):
        out.append((lo, len(counts)))
    return out
