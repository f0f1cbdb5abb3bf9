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
import pandas as pd

from fbterm.backtest.book import Book
from fbterm.backtest.venue import BarVenue
from fbterm.model import Bar, instrument_from_key
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
    step = BarStepper(venue, book, strategy, sizing, stops, target).step
    n = len(venue.o)
    tick = max(n // 50, 1)
    for i in range(n):
        step(i)
        if progress is not None and i % tick == 0:
            progress(i / n)


class BarStepper:
    """The replay path's work on one bar, for :func:`bar_loop` and for the portfolio replay,
    which steps many of these (one per strategy and symbol) along one clock.

    ``equity`` (default: the book marked at the bar's open) is what ``execute`` sizes on; a
    strategy trading several symbols is given its equity across all of them. With
    ``signals`` (``analyze``'s frame, fast mode), ``execute`` is handed the row of the bar
    whose target is pending, as the fast path's event loop hands it: strategies with their
    own ``execute`` read indicator columns there.
    """

    def __init__(
        self,
        venue: BarVenue,
        book: Book,
        strategy: StrategyInterface,
        sizing: Sizing,
        stops: StopRules | None,
        target: np.ndarray | None,
        equity: Callable[[int], float] | None = None,
        signals: pd.DataFrame | None = None,
    ) -> None:
        self.venue, self.book, self.strategy, self.stops, self.target = (
            venue,
            book,
            strategy,
            stops,
            target,
        )
        self.sym = venue.symbol
        book.insts[self.sym] = instrument_from_key(self.sym)
        self.every_bar = bool(getattr(strategy, "execute_every_bar", False))
        self.ctx = venue.context(strategy, sizing, book)
        self.equity = equity or (lambda i: venue.equity_at_open(book, i))
        self.pending = math.nan
        self.extreme = math.nan  # best price since entry, for the trailing stop (NaN: not yet)
        self.signals = signals
        # False while trading is halted: the strategy sends nothing, as the live executor
        # holds a halted strategy (its stop exits still go to the gate).
        self.trading = True

    def step(self, i: int) -> None:
        venue, book, sym, ctx = self.venue, self.book, self.sym, self.ctx
        every_bar = self.every_bar
        if every_bar:
            venue.options.settle_expired(book, i)
        if venue.exits and venue.work_exits(book, i):
            # As after a stop: the strategy's next target acts even if it repeats.
            self.strategy.forget_target(sym)
            self.extreme = math.nan
        pending = self.pending
        if (pending == pending or every_bar) and self.trading:
            ctx.price = venue.o[i]
            ctx.ts = venue.ts[i]
            ctx.position = book.pos.get(sym, 0.0)
            ctx.equity = self.equity(i)
            if every_bar:
                ctx.option_chain = venue.options.chain(i)
            rows = self.signals
            for sig in self.strategy.execute(
                pending if rows is None else rows.iloc[i - 1 : i], ctx
            ):
                p_before = book.pos.get(sym, 0.0)
                venue.submit(book, sig, i)
                if sig.instrument.key == sym and book.pos.get(sym, 0.0) != p_before:
                    self.extreme = math.nan
        stops = self.stops
        if stops is not None:
            pos = book.pos.get(sym, 0.0)
            if pos:
                entry = book.cost[sym]
                extreme = self.extreme
                if extreme != extreme:
                    extreme = entry
                stop, tp = stops.levels(pos > 0, entry, extreme, pos)
                if venue.stop_exit(book, i, pos, stop, tp):
                    # After a stop the strategy's next target acts even if it repeats.
                    self.strategy.forget_target(sym)
                    self.extreme = math.nan
                else:
                    self.extreme = (
                        max(extreme, venue.h[i]) if pos > 0 else min(extreme, venue.lo[i])
                    )
        if self.target is None:
            self.pending = self.strategy.on_bar(
                Bar(sym, venue.ts[i], venue.o[i], venue.h[i], venue.lo[i], venue.c[i], venue.v[i])
            )
        else:
            self.pending = self.target[i]
