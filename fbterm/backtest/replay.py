"""The replay path: bars one at a time, as the live engine sees them.

At each bar's open the previous bar's target is handed to ``execute`` and its orders are
gated and filled (:class:`fbterm.backtest.venue.BarVenue`); then the stops are checked against
the bar; then the bar, now closed, goes to ``on_bar`` for the next target. Strategies that act
on every bar (options) take this path in fast mode too, reading ``analyze``'s targets instead
of calling ``on_bar``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from fbterm.backtest.book import Book
from fbterm.backtest.venue import BarVenue
from fbterm.model import Bar, Stock
from fbterm.risk.stops import StopRules
from fbterm.strategies.base import Sizing, StrategyInterface

Progress = Callable[[float], None]


def bar_loop(
    venue: BarVenue,
    book: Book,
    strategy: StrategyInterface,
    sizing: Sizing,
    stops: StopRules | None,
    target: np.ndarray | None,
    progress: Progress | None = None,
) -> None:
    """One bar at a time: act on the previous bar's target at this open, fill, check stops,
    then feed the bar to ``on_bar`` (``target`` None) or read ``target``."""
    sym = venue.symbol
    book.insts[sym] = Stock(sym)
    every_bar = bool(getattr(strategy, "execute_every_bar", False))
    o, hi, lo, c, v, ts = venue.o, venue.h, venue.lo, venue.c, venue.v, venue.ts
    n = len(o)
    ctx = venue.context(strategy, sizing, book)
    pending = math.nan
    extreme = math.nan  # best price since entry, for the trailing stop (NaN: not yet known)
    tick = max(n // 50, 1)
    on_bar = strategy.on_bar
    execute = strategy.execute
    submit = venue.submit
    options = venue.options
    for i in range(n):
        if every_bar:
            options.settle_expired(book, i)
        if pending == pending or every_bar:
            ctx.price = o[i]
            ctx.ts = ts[i]
            ctx.position = book.pos.get(sym, 0.0)
            ctx.equity = venue.equity_at_open(book, i)
            if every_bar:
                ctx.option_chain = options.chain(i)
            for sig in execute(pending, ctx):
                p_before = book.pos.get(sym, 0.0)
                submit(book, sig, i)
                if sig.instrument.key == sym and book.pos.get(sym, 0.0) != p_before:
                    extreme = math.nan
        if stops is not None:
            pos = book.pos.get(sym, 0.0)
            if pos:
                entry = book.cost[sym]
                if extreme != extreme:
                    extreme = entry
                stop, tp = stops.levels(pos > 0, entry, extreme, pos)
                if venue.stop_exit(book, i, pos, stop, tp):
                    # After a stop the strategy's next target acts even if it repeats.
                    strategy.forget_target(sym)
                    extreme = math.nan
                else:
                    extreme = max(extreme, hi[i]) if pos > 0 else min(extreme, lo[i])
        if target is None:
            pending = on_bar(Bar(sym, ts[i], o[i], hi[i], lo[i], c[i], v[i]))
        else:
            pending = target[i]
        if progress is not None and i % tick == 0:
            progress(i / n)
