"""The paper venue's account: cash, positions, the marks they are valued at, and margin.

Positions are kept per instrument (what the venue reports) and per (strategy, instrument) (a
margin liquidation closes each strategy's own part). Marks are the last market update of an
instrument, or the option pricer's mid for an option that has none. Buying power and what an
order may add follow :mod:`fbterm.execution.margin`, the backtest's rule; what working orders
hold back from buying power is the order book's (:mod:`.paper_orders`) and is passed in.
"""

from __future__ import annotations

from collections.abc import Callable

from fbterm.config import PaperBrokerConfig
from fbterm.execution.brokers.base import BrokerPosition, MarginImpact
from fbterm.execution.brokers.fills import MarketUpdate
from fbterm.execution.margin import MarginRule
from fbterm.model import Fill, Instrument, Option, OptionQuote, Order, Position, Side

OptionPricer = Callable[[Option], OptionQuote | None]


class PaperAccount:
    """The account's books. Not thread-safe: the engine thread owns it (through the venue)."""

    def __init__(self, cfg: PaperBrokerConfig, option_pricer: OptionPricer | None) -> None:
        self.cash = cfg.cash
        self.leverage = cfg.leverage
        self.option_pricer = option_pricer
        self.positions: dict[str, Position] = {}
        self.open: dict[str, Position] = {}  # the non-flat subset of positions
        self.last: dict[str, MarketUpdate] = {}
        # Quantity per (strategy, instrument): a liquidation closes each strategy's own part.
        self.strategy_qty: dict[tuple[str, str], float] = {}
        self.margin = MarginRule(cfg.leverage, cfg.maintenance_margin)

    # -- marks ---------------------------------------------------------------------------
    def mark(self, inst: Instrument) -> float | None:
        u = self.last.get(inst.key)
        if u is not None:
            return u.close
        if isinstance(inst, Option) and self.option_pricer is not None:
            q = self.option_pricer(inst)
            return q.mid if q else None
        return None

    def marked_positions(self) -> tuple[float, float]:
        """Net and gross value of the open positions at their marks (cost when unmarked)."""
        net = gross = 0.0
        for pos in self.open.values():  # buying power is checked per order: skip flat books
            mark = self.mark(pos.instrument)
            px = pos.avg_cost if mark is None else mark
            v = pos.quantity * px * pos.multiplier
            net += v
            gross += abs(v)
        return net, gross

    def equity(self) -> float:
        net, _ = self.marked_positions()
        return self.cash + net

    # -- booking -------------------------------------------------------------------------
    def book(self, fill: Fill) -> None:
        key = fill.instrument.key
        held = (fill.strategy_id, key)
        q = self.strategy_qty.get(held, 0.0) + fill.signed_quantity
        if abs(q) < 1e-9:
            self.strategy_qty.pop(held, None)
        else:
            self.strategy_qty[held] = q
        pos = self.positions.get(key) or Position(fill.instrument)
        new = self.positions[key] = pos.apply_fill(fill)
        if new.is_flat:
            self.open.pop(key, None)
        else:
            self.open[key] = new
        self.cash -= (
            fill.signed_quantity * fill.price * fill.instrument.multiplier + fill.commission
        )

    # -- margin --------------------------------------------------------------------------
    def free_equity(self) -> float:
        net, gross = self.marked_positions()  # once: marking options prices each of them
        return self.margin.buying_power(self.cash + net, gross)

    def margin_refusal(self, order: Order, price: float, reserved: float) -> str:
        """Why the margin rule refuses ``order`` at ``price`` with ``reserved`` already held
        back by working orders; "" when it may go."""
        inst = order.instrument
        current = self.positions.get(inst.key)
        q0 = current.quantity if current else 0.0
        q1 = q0 + order.signed_quantity
        if abs(q1) <= abs(q0) and q0 * q1 >= 0:
            return ""  # it only reduces a position: always allowed
        # The margin rule, with working orders' value already spoken for.
        net, gross = self.marked_positions()
        mark = self.mark(inst)
        own = abs(q0) * (mark if mark is not None else price) * inst.multiplier
        signed = order.signed_quantity
        equity = self.cash + net
        other = gross - own + reserved
        if self.margin.admit(q0, signed, price, 0.0, equity, other, inst.multiplier) != signed:
            added = (abs(q1) - abs(q0) if q0 * q1 >= 0 else abs(q1)) * price * inst.multiplier
            kept = abs(q0) * price * inst.multiplier if q0 * q1 >= 0 else 0.0
            available = self.margin.buying_power(equity, other + kept)
            return (
                f"insufficient buying power: order adds {added:,.2f} > available {available:,.2f}"
            )
        return ""

    def admitted(self, signed: float, price: float, inst: Instrument, fee_per_unit: float) -> float:
        """How much of a fill of ``signed`` units the margin rule lets through (unsigned)."""
        current = self.positions.get(inst.key)
        q0 = current.quantity if current else 0.0
        if q0 and (q0 > 0) != (signed > 0) and abs(signed) <= abs(q0):
            return abs(signed)  # it only reduces a position: always allowed
        net, gross = self.marked_positions()
        mark = self.mark(inst)
        own = abs(q0) * (mark if mark is not None else price) * inst.multiplier
        ok = self.margin.admit(
            q0, signed, price, fee_per_unit, self.cash + net, gross - own, inst.multiplier
        )
        return abs(ok)

    def what_if(
        self,
        instrument: Instrument,
        side: Side,
        quantity: float,
        price: float,
        *,
        reserved: float,
        venue: str,
    ) -> MarginImpact:
        """The margin an order would use if it filled at ``price`` (Reg T: gross / leverage),
        by the same marks and buying-power rule the account itself uses."""
        net, gross = self.marked_positions()
        pos = self.open.get(instrument.key)
        q0 = pos.quantity if pos else 0.0
        # After the fill the account marks the whole position at the market, as it does now;
        # the order's own price only stands in when there is no mark yet.
        mark = self.mark(instrument)
        px = price if mark is None else mark
        mult = instrument.multiplier
        gross_after = gross - abs(q0 * px * mult) + abs((q0 + side.sign * quantity) * px * mult)
        lev = self.leverage
        free_after = (self.cash + net) * lev - gross_after
        return MarginImpact(
            venue=venue,
            margin_before=gross / lev,
            margin_after=gross_after / lev,
            buying_power_after=max(free_after - reserved, 0.0),
            note=f"paper: gross / leverage {lev:g}",
        )

    def broker_positions(self, account: str) -> list[BrokerPosition]:
        out = []
        for p in self.positions.values():
            if not p.is_flat:
                out.append(
                    BrokerPosition(
                        p.instrument, p.quantity, p.avg_cost, account, self.mark(p.instrument)
                    )
                )
        return out
