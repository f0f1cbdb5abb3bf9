"""The fast path: ``analyze`` once over the whole history, then step only from one target
change to the next (one Python step per order, not per bar).

It applies the same rules as the replay path, through the same functions: sizing
(:func:`fbterm.strategies.base.sizer`), commission (the model's ``__call__``), fill prices
(:mod:`fbterm.execution.brokers.fills`) and stops (:mod:`fbterm.risk.stops`); between two
orders the stops are searched with numpy, using the array twins of the fill model's touch
rules. Fills are bit-identical to the replay path's (tests hold both to it).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from fbterm.backtest.book import Book
from fbterm.backtest.venue import BarVenue
from fbterm.execution.brokers.fills import (
    limits_touched,
    market_price,
    market_prices,
    stops_touched,
)
from fbterm.model import instrument_from_key
from fbterm.risk.stops import StopRules, bar_exit
from fbterm.strategies.base import Sizing, StrategyInterface, reentry_equity, sizer


def event_loop(
    venue: BarVenue,
    book: Book,
    strategy: StrategyInterface,
    sizing: Sizing,
    stops: StopRules | None,
    target: np.ndarray,
    signals: pd.DataFrame,
) -> None:
    """Step from one target change to the next; stops are found with numpy in between."""
    strat = strategy
    sym = venue.symbol
    inst = instrument_from_key(sym)
    book.insts[sym] = inst
    o = venue.o
    n = len(o)
    nn = np.flatnonzero(~np.isnan(target))
    if len(nn) == 0:
        return
    vals = target[nn]
    chg_mask = np.empty(len(nn), dtype=bool)
    chg_mask[0] = True
    chg_mask[1:] = vals[1:] != vals[:-1]
    reenter = bool(getattr(strat, "reenter_on_repeat", False))
    # With re-entry every non-NaN target acts (a repeat closes and re-opens).
    events: list[int] = nn.tolist() if reenter else nn[chg_mask].tolist()
    # The base ``execute`` can be applied here without building signals and orders, as long
    # as no gate needs to see the orders; re-entry with stops takes the general route.
    inline = (
        type(strat).execute is StrategyInterface.execute
        and venue.risk_gate is None
        and not (reenter and stops is not None)
    )
    # The plain loop books one stock's fills itself (multiplier 1).
    if inline and stops is None and inst.multiplier == 1:
        plain_loop(venue, book, sizing, reenter, target, [e for e in events if e + 1 < n])
        return
    size = sizer(sizing, multiplier=inst.multiplier, commission_fraction=venue.cf, fee=venue.fee)
    check = may_exceed(sizing)
    commission = venue.commission
    pos = 0.0
    last = math.nan  # the target last acted on (NaN: none, or forgotten after a stop)
    ctx = venue.context(strat, sizing, book)
    ts = venue.ts
    k = 0
    seg = 0  # first bar whose stop check is still to do for the current position
    n_ev = len(events)
    while True:
        e = events[k] if k < n_ev else n - 1
        f = e + 1 if k < n_ev else n  # the bar whose open acts on event e
        if f > n - 1 and k < n_ev:
            f = n  # a signal on the last bar never fills
        if stops is not None and pos and seg < f:
            j, price, reason = find_stop(venue, stops, pos, book.cost[sym], seg, f)
            if j >= 0:
                venue.exit_at(book, j, inst, pos, price, reason)
                pos = book.pos.get(sym, 0.0)
                if not pos:
                    last = math.nan
                    strat.forget_target(sym)
                    # After a stop the next non-NaN target acts even if it repeats.
                    r = int(np.searchsorted(nn, j))
                    if r < len(nn):
                        nxt = int(nn[r])
                        kk = k
                        while kk < n_ev and events[kk] < nxt:
                            kk += 1
                        if kk >= n_ev or events[kk] != nxt:
                            events.insert(kk, nxt)
                            n_ev += 1
                        k = kk
                    else:
                        k = n_ev
                    continue
        if k >= n_ev or f >= n:
            break
        t = target[e]
        k += 1
        if inline:
            if t == last:
                continue
            last = t
            px = o[f]
            qty = size(t, px, book.cash + pos * px * inst.multiplier, pos)
            delta = qty - pos
            if abs(delta) < 1e-9:
                continue
            fill_px = market_price(delta > 0, px)
            fee = commission(abs(delta), fill_px, inst.multiplier)
            if check:
                delta = venue.admit(book, f, inst, delta, fill_px, fee)
                if abs(delta) < 1e-9:
                    continue
                fee = commission(abs(delta), fill_px, inst.multiplier)
            book.fill(f, inst, delta, fill_px, fee)
            pos = book.pos.get(sym, 0.0)
            seg = f
        else:
            ctx.price = o[f]
            ctx.ts = ts[f]
            ctx.position = pos
            ctx.equity = book.cash + pos * o[f] * inst.multiplier
            p_before = pos
            for sig in strat.execute(signals.iloc[e : e + 1], ctx):
                venue.submit(book, sig, f)
            pos = book.pos.get(sym, 0.0)
            if pos != p_before:
                seg = f


def plain_loop(
    venue: BarVenue,
    book: Book,
    sizing: Sizing,
    reenter: bool,
    target: np.ndarray,
    events: list[int],
) -> None:
    """The hot loop: the base ``execute`` with no stops and no gate, one step per event.

    It books its fills straight into the log instead of through :meth:`Book.fill` (one
    stock, multiplier 1: the same arithmetic without the per-fill bookkeeping, as the loop
    runs once per fill, tens of thousands of times on a million bars); sizing, commission
    and fill prices are the shared rules."""
    sym = venue.symbol
    o = venue.o
    cf = venue.cf
    size = sizer(sizing, commission_fraction=cf, fee=venue.fee)
    # Sizes that can cost more than the equity are held to the margin rule (a cash account);
    # all_in and fraction <= 1 never do, so the hot loop skips the check for them.
    check = may_exceed(sizing)
    admit = venue.margin.admit
    fee_of = venue.commission.__call__  # bound once: a lookup per fill is a real share here
    cash, pos, last = book.cash, 0.0, math.nan
    rejected: list[tuple[int, float]] = []
    fb: list[int] = []
    fq: list[float] = []
    fp: list[float] = []
    fc: list[float] = []
    # Bound appends held in locals, for the same reason.
    fb_add, fq_add, fp_add, fc_add = fb.append, fq.append, fp.append, fc.append
    tv = target[events].tolist()
    # The open that acts on each event sizes the order; the market order fills at the price
    # the fill model gives for that open (bars carry no bid/ask, so it is the open itself).
    opens = o[np.asarray(events, dtype=np.int64) + 1]
    sv = opens.tolist()
    pv = market_prices(opens).tolist()
    for e, t, spx, px in zip(events, tv, sv, pv, strict=True):
        if t == last:
            if not (reenter and t):
                continue
            # Re-entry: close at this open, then size afresh on what is left (as
            # StrategyInterface._reenter does).
            eq = reentry_equity(cash + pos * spx, pos, spx, cf, venue.fee)
            if pos:
                fee = fee_of(abs(pos), px)
                cash -= -pos * px + fee
                fb_add(e + 1)
                fq_add(-pos)
                fp_add(px)
                fc_add(fee)
                pos = 0.0
            qty = size(t, spx, eq, 0.0)
            if qty and check:
                fee = fee_of(abs(qty), px)
                qty = admit(0.0, qty, px, fee / abs(qty), cash)
                if not qty:
                    rejected.append((e + 1, abs(size(t, spx, eq, 0.0))))
            if qty:
                fee = fee_of(abs(qty), px)
                cash -= qty * px + fee
                pos = qty
                fb_add(e + 1)
                fq_add(qty)
                fp_add(px)
                fc_add(fee)
            continue
        last = t
        qty = size(t, spx, cash + pos * spx, pos)
        delta = qty - pos
        if abs(delta) < 1e-9:
            continue
        fee = fee_of(abs(delta), px)
        if check:
            ok = admit(pos, delta, px, fee / abs(delta), cash + pos * px)
            if ok != delta:
                rejected.append((e + 1, abs(delta) - abs(ok)))
                qty, delta = pos + ok, ok
                if abs(delta) < 1e-9:
                    continue
                fee = fee_of(abs(delta), px)
        cash -= delta * px + fee
        pos = qty
        fb_add(e + 1)
        fq_add(delta)
        fp_add(px)
        fc_add(fee)
    for bar, cut in rejected:
        venue.rejected.append(
            (
                float(venue.ts[bar]),
                sym,
                f"margin: {cut:g} {sym} would cost more than the buying power",
            )
        )
    book.cash = cash
    book.fb, book.fq, book.fp, book.fc = fb, fq, fp, fc
    book.fk = [sym] * len(fb)
    book.fr = [""] * len(fb)
    book.plain = True
    if pos:
        book.pos[sym] = pos
        book.cost[sym] = fp[-1]


def may_exceed(sizing: Sizing) -> bool:
    """Whether a size can cost more than the equity (then each order passes the margin rule):
    fixed and cash sizes, or a fraction above 1."""
    return sizing.mode in ("fixed", "cash") or sizing.value > 1.0


def find_stop(
    venue: BarVenue, stops: StopRules, pos: float, entry: float, start: int, end: int
) -> tuple[int, float, str]:
    """First bar in [start, end) where the stop or take-profit of ``pos`` triggers, with its
    fill price and reason (-1 when none): the replay path's rules, searched with numpy."""
    long = pos > 0
    hi, lo = venue.h[start:end], venue.lo[start:end]
    m = len(hi)
    if m == 0:
        return -1, 0.0, ""
    if stops.trails:
        ext = np.empty(m)
        ext[0] = entry
        if m > 1:
            if long:
                ext[1:] = np.maximum(np.maximum.accumulate(hi[:-1]), entry)
            else:
                ext[1:] = np.minimum(np.minimum.accumulate(lo[:-1]), entry)
    else:
        ext = np.full(m, entry)
    # Levels per bar, computed by the same scalar rule as the replay path (exact): once per
    # distinct best price, which repeats for long stretches.
    if not stops.trails:
        s0, t0 = stops.levels(long, entry, entry, pos)
        stop = np.full(m, s0)
        tp = np.full(m, t0)
    else:
        uniq, inv = np.unique(ext, return_inverse=True)
        lv = np.array([stops.levels(long, entry, float(x), pos) for x in uniq]).reshape(-1, 2)
        stop = lv[inv, 0]
        tp = lv[inv, 1]
    # The exit of a long sells, of a short buys.
    hit = stops_touched(not long, stop, hi, lo) | limits_touched(not long, tp, hi, lo)
    if not hit.any():
        return -1, 0.0, ""
    j = int(np.argmax(hit))
    i = start + j
    exit_ = bar_exit(long, float(stop[j]), float(tp[j]), venue.o[i], venue.h[i], venue.lo[i])
    assert exit_ is not None  # the bar touched a level, so it exits
    reason, price = exit_
    return i, float(price), reason
