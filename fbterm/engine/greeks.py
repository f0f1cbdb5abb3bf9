"""The account's greeks from the engine's positions and marks (engine thread only): the risk
pane's rows and the inputs of the gate's delta and vega limits."""

from __future__ import annotations

from collections.abc import Callable

from fbterm.engine.market import MarketState
from fbterm.execution.orders import OrderManagement
from fbterm.model import Instrument, Option, Order
from fbterm.model.greeks import GreekRow, Greeks
from fbterm.risk.greeks import Pricing, greek_rows, position_greeks, total


class GreekBook:
    """Greeks of what the account holds, priced from the engine's marks."""

    def __init__(
        self,
        market: MarketState,
        oms: OrderManagement,
        clock: Callable[[], float],
        rate: float = 0.0,
    ) -> None:
        self.market = market
        self.oms = oms
        self.clock = clock
        self.rate = rate

    def pricing(self, inst: Instrument) -> Pricing | None:
        """Spot and volatility for ``inst``: option quotes carry both (and a model delta)."""
        if isinstance(inst, Option):
            q = self.market.option_marks.get(inst.key) or self.market.option_quote(inst)
            if q is None:
                return None
            return Pricing(q.underlying_price, q.iv, q.ts, self.rate)
        spot = self.market.mark(inst.key)
        return Pricing(spot, None, self.clock()) if spot is not None else None

    def rows(self) -> tuple[GreekRow, ...]:
        return greek_rows(
            (p.instrument, p.quantity, self.pricing(p.instrument))
            for p in self.oms.positions.values()
            if not p.is_flat
        )

    # -- the gate's GreekInputs ----------------------------------------------------------
    def portfolio_greeks(self) -> Greeks:
        return total(self.rows())

    def order_greeks(self, order: Order) -> Greeks | None:
        p = self.pricing(order.instrument)
        if p is None:
            if isinstance(order.instrument, Option):
                return None
            # Delta one without a mark yet: the order's own price values it.
            px = order.reference_price() or 0.0
            p = Pricing(px, None, self.clock())
        return position_greeks(order.instrument, order.signed_quantity, p)
