"""The market a backtest trades in: one symbol's bars, the pre-trade gate, the fill model and
commission. Both paths place their orders here, so they fill alike.

Orders built here go through ``risk_gate`` (the engine's pre-trade check, unchanged) and then
:func:`fbterm.execution.brokers.fills.match_order` against bar ``i``, the paper broker's fill
model; a refused or unfilled order is logged in ``rejected`` and never fills.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from fbterm.backtest.book import Book
from fbterm.backtest.inputs import bar_seconds
from fbterm.backtest.options import OptionMarks
from fbterm.execution.brokers.fills import MarketUpdate, match_order, oca_after_fill, oca_rank
from fbterm.execution.costs import CommissionModel, FractionCommission, commission_fraction
from fbterm.execution.margin import CASH_ACCOUNT, MarginRule
from fbterm.execution.orders import bracket_children
from fbterm.model import Instrument, Option, Order, OrderType, Side, Signal
from fbterm.risk.stops import bar_exit
from fbterm.strategies.base import Fee, Sizing, StrategyContext, StrategyInterface

RiskGate = Callable[[Order], "str | None"]


class BarVenue:
    """Orders against one symbol's bars: gate, fill, commission, and the rejection log."""

    def __init__(
        self,
        bars: pd.DataFrame,
        *,
        symbol: str,
        strategy_id: str,
        commission: CommissionModel,
        risk_gate: RiskGate | None,
        rate: float,
        option_vol_window: int,
        margin: MarginRule = CASH_ACCOUNT,
    ):
        self.symbol = symbol
        self.margin = margin
        self.strategy_id = strategy_id
        self.commission = commission
        self.cf = commission_fraction(commission)
        # A commission sizing cannot net in closed form (per share): sizing asks it instead.
        self.fee: Fee | None = None if isinstance(commission, FractionCommission) else commission
        self.risk_gate = risk_gate
        self.o = bars["open"].to_numpy()
        self.h = bars["high"].to_numpy()
        self.lo = bars["low"].to_numpy()
        self.c = bars["close"].to_numpy()
        self.v = bars["volume"].to_numpy()
        self.ts = bar_seconds(bars.index)
        self.options = OptionMarks(
            bars.index, self.o, self.c, self.ts, rate=rate, vol_window=option_vol_window
        )
        self.rejected: list[tuple[Any, str, str]] = []
        self._order_seq = 0
        # Working bracket exits (take-profit and stop-loss of filled entries).
        self.exits: list[Order] = []

    def reset(self) -> None:
        """Forget the orders of a previous run."""
        self._order_seq = 0
        self.rejected = []
        self.exits = []

    def context(self, strategy: StrategyInterface, sizing: Sizing, book: Book) -> StrategyContext:
        """The context ``execute`` is given; the paths update its price, time and position."""
        return StrategyContext(
            strategy_id=strategy.strategy_id,
            symbol=self.symbol,
            price=0.0,
            ts=0.0,
            equity=book.cash,
            position=0.0,
            sizing=sizing,
            commission_fraction=self.cf,
            positions=book.pos,
            fee=self.fee,
        )

    # -- orders --------------------------------------------------------------------------
    def order(
        self,
        inst: Instrument,
        qty: float,
        i: int,
        otype: OrderType = OrderType.MARKET,
        stop: float | None = None,
        limit: float | None = None,
        reason: str = "",
    ) -> Order:
        """An order for ``qty`` (signed) placed at bar ``i``'s open."""
        self._order_seq += 1
        return Order(
            client_order_id=f"bt-{self._order_seq}",
            instrument=inst,
            side=Side.BUY if qty > 0 else Side.SELL,
            quantity=abs(qty),
            order_type=otype,
            stop_price=stop,
            limit_price=limit,
            strategy_id=self.strategy_id,
            created_ts=float(self.ts[i]),
            signal_price=float(self.o[i]),
            reason=reason,
        )

    def gate(self, order: Order) -> bool:
        """Whether the pre-trade gate lets ``order`` through; a refusal is logged."""
        if self.risk_gate is None:
            return True
        reason = self.risk_gate(order)
        if reason:
            self.rejected.append((order.created_ts, order.symbol, str(reason)))
            return False
        return True

    def update(self, inst: Instrument, i: int) -> MarketUpdate:
        """Bar ``i`` as the fill model sees it; an option as one price from the model."""
        if isinstance(inst, Option):
            px = self.options.price(inst, self.o[i], self.ts[i], i - 1)
            return MarketUpdate(self.ts[i], px, px, px, px)
        return MarketUpdate(self.ts[i], self.o[i], self.h[i], self.lo[i], self.c[i], self.v[i])

    def submit(self, book: Book, sig: Signal, i: int) -> None:
        """An order intent from ``execute``: gate it, then fill it against bar ``i``."""
        qty = sig.quantity if sig.side is Side.BUY else -sig.quantity
        order = self.order(
            sig.instrument, qty, i, sig.order_type, sig.stop_price, sig.limit_price, sig.reason
        )
        if not self.gate(order):
            return
        d = match_order(order, self.update(sig.instrument, i))
        if d is None or d.quantity <= 0:
            # Resting limit/stop orders are not kept across bars: the built-ins trade at market,
            # and a silent resting book would make the two paths diverge.
            self.rejected.append(
                (order.created_ts, order.symbol, "unfilled non-market order dropped")
            )
            return
        inst = sig.instrument
        q = d.quantity if qty > 0 else -d.quantity
        fee = self.commission(d.quantity, d.price, inst.multiplier)
        q = self.admit(book, i, inst, q, d.price, fee)
        if not q:
            return
        fee = self.commission(abs(q), d.price, inst.multiplier)
        book.fill(i, inst, q, d.price, fee, sig.reason)
        if sig.is_bracket:
            # The exits work from the next bar, as the paper venue releases them after the
            # entry's fill, one cancelling (or reducing) the other.
            entry = order.with_fill(abs(q), d.price)
            self.exits += bracket_children(entry, sig, self._next_id, order.created_ts)

    def _next_id(self) -> str:
        self._order_seq += 1
        return f"bt-{self._order_seq}"

    def work_exits(self, book: Book, i: int) -> bool:
        """Match the working bracket exits against bar ``i`` (the fill model, the paper
        venue's OCA rule and matching order). True when one filled."""
        if not self.exits:
            return False
        filled = False
        for ex in sorted(self.exits, key=oca_rank):
            if ex not in self.exits:  # cancelled by its OCA sibling in this bar
                continue
            d = match_order(ex, self.update(ex.instrument, i))
            if d is None or d.quantity <= 0:
                if d is not None and d.triggered:
                    self.exits[self.exits.index(ex)] = ex.transition(ex.status, triggered=True)
                continue
            filled = True
            inst = ex.instrument
            signed = d.quantity if ex.side is Side.BUY else -d.quantity
            fee = self.commission(d.quantity, d.price, inst.multiplier)
            book.fill(i, inst, signed, d.price, fee, ex.reason)
            done = ex.with_fill(d.quantity, d.price)
            rest = [o for o in self.exits if o is not ex]
            if done.is_live:
                rest.append(done)
            out: list[Order] = []
            for o in rest:
                if o.oca_group and o.oca_group == ex.oca_group:
                    reduced = oca_after_fill(o, d.quantity)
                    if reduced is not None:
                        out.append(reduced)
                else:
                    out.append(o)
            self.exits = out
        return filled

    def admit(
        self, book: Book, i: int, inst: Instrument, q: float, price: float, fee: float
    ) -> float:
        """The part of a fill of ``q`` at bar ``i`` the account's margin takes
        (:meth:`fbterm.execution.margin.MarginRule.admit`); a cut is logged in ``rejected``."""
        key = inst.key
        pos = book.pos.get(key, 0.0)
        if pos and (pos > 0) != (q > 0) and abs(q) <= abs(pos):
            return q  # it only reduces: always taken (and this runs once per order)
        if key == self.symbol and len(book.pos) <= (1 if pos else 0):
            # only this instrument is held
            eq, gross = book.cash + pos * float(self.o[i]) * inst.multiplier, 0.0
        else:
            eq, gross = self.equity_at_open(book, i), self.gross_at_open(book, i, exclude=key)
        ok = self.margin.admit(pos, q, price, fee / abs(q), eq, gross, inst.multiplier)
        if abs(ok - q) > 1e-9:
            self.rejected.append(
                (
                    float(self.ts[i]),
                    key,
                    f"margin: {abs(q) - abs(ok):g} of {abs(q):g} {key} would cost more than "
                    f"the buying power ({self.margin.buying_power(eq, gross):,.2f})",
                )
            )
        return ok

    # -- stops ---------------------------------------------------------------------------
    def stop_exit(self, book: Book, i: int, pos: float, stop: float, tp: float) -> bool:
        """Exit ``pos`` on bar ``i`` if its stop or take-profit is touched. True if it did.

        The replay path: the exit is a real stop or limit order at the level, filled by the
        fill model, as the paper broker would."""
        inst = book.insts[self.symbol]
        hit = bar_exit(pos > 0, stop, tp, self.o[i], self.h[i], self.lo[i])
        if hit is None:
            return False
        reason = hit[0]
        if reason == "stop":
            order = self.order(inst, -pos, i, OrderType.STOP, stop=stop, reason=reason)
        else:
            order = self.order(inst, -pos, i, OrderType.LIMIT, limit=tp, reason=reason)
        if not self.gate(order):
            return False
        d = match_order(order, self.update(inst, i))
        if d is None or d.quantity <= 0:
            return False
        book.fill(
            i,
            inst,
            -pos,
            d.price,
            self.commission(abs(pos), d.price, inst.multiplier),
            order.reason,
        )
        return True

    def exit_at(
        self, book: Book, j: int, inst: Instrument, pos: float, price: float, reason: str
    ) -> None:
        """Exit ``pos`` on bar ``j`` at ``price``, found by :func:`fbterm.risk.stops.bar_exit`
        (the fast path). The gate, when there is one, sees the exit as an order at that price."""
        if self.risk_gate is not None:
            stop = reason == "stop"
            order = self.order(
                inst,
                -pos,
                j,
                OrderType.STOP if stop else OrderType.LIMIT,
                stop=price if stop else None,
                limit=None if stop else price,
                reason=reason,
            )
            if not self.gate(order):
                return
        book.fill(j, inst, -pos, price, self.commission(abs(pos), price, inst.multiplier), reason)

    def liquidate(self, book: Book, j: int) -> None:
        """Close the account out at bar ``j``'s close (:mod:`fbterm.execution.margin`): fills
        after bar ``j`` are forgotten, every position is closed at the close (options at their
        model price), and equity is 0 from there on."""
        book.truncate(j)
        self.close_out(book, j)
        book.wiped_out = j

    def close_out(self, book: Book, j: int) -> None:
        """Close every position in ``book`` at bar ``j``'s close (options at their model
        price), past any gate: the account has nothing left to risk."""
        for key, q in list(book.pos.items()):
            inst = book.insts[key]
            px = float(self.c[j])
            if isinstance(inst, Option):
                px = self.options.price(inst, px, self.ts[j], j)
            fee = self.commission(abs(q), px, inst.multiplier)
            book.fill(j, inst, -q, px, fee, "liquidation")

    # -- marks ---------------------------------------------------------------------------
    def gross_at_open(self, book: Book, i: int, exclude: str = "") -> float:
        """Gross value of the positions at bar ``i``'s open, but ``exclude``'s."""
        px = self.o[i]
        gross = 0.0
        for key, q in book.pos.items():
            if key == exclude:
                continue
            inst = book.insts[key]
            mark = (
                self.options.price(inst, px, self.ts[i], i - 1) if isinstance(inst, Option) else px
            )
            gross += abs(q) * mark * inst.multiplier
        return gross

    def equity_at_open(self, book: Book, i: int) -> float:
        """The book marked at bar ``i``'s open (options by the model)."""
        px = self.o[i]
        eq = book.cash
        for key, q in book.pos.items():
            inst = book.insts[key]
            if key == self.symbol:
                eq += q * px * inst.multiplier
            elif isinstance(inst, Option):
                eq += q * inst.multiplier * self.options.price(inst, px, self.ts[i], i - 1)
        return float(eq)
