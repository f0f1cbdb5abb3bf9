"""Fills and the positions derived from them (positions change only by applying a fill)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from fbterm.model.instruments import Instrument, instrument_from_key
from fbterm.model.orders import Side, utc_now

# ---------------------------------------------------------------------------------- fills


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: str
    client_order_id: str
    instrument: Instrument
    side: Side
    quantity: float
    price: float
    commission: float = 0.0
    ts: float = field(default_factory=utc_now)
    strategy_id: str = "manual"

    @property
    def signed_quantity(self) -> float:
        return self.side.sign * self.quantity

    @property
    def value(self) -> float:
        return self.quantity * self.price * self.instrument.multiplier

    def to_dict(self) -> dict[str, Any]:
        return {
            "fill_id": self.fill_id,
            "order_id": self.client_order_id,
            "instrument": self.instrument.key,
            "side": self.side.value,
            "qty": self.quantity,
            "price": self.price,
            "commission": self.commission,
            "ts": self.ts,
            "strategy": self.strategy_id,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fill:
        return cls(
            fill_id=d["fill_id"],
            client_order_id=d["order_id"],
            instrument=instrument_from_key(d["instrument"]),
            side=Side(d["side"]),
            quantity=float(d["qty"]),
            price=float(d["price"]),
            commission=float(d.get("commission", 0.0)),
            ts=float(d.get("ts", 0.0)),
            strategy_id=d.get("strategy", "manual"),
        )


# ------------------------------------------------------------------------------ positions


@dataclass(frozen=True, slots=True)
class Position:
    """A signed position built only from fills (average-cost accounting)."""

    instrument: Instrument
    quantity: float = 0.0
    avg_cost: float = 0.0  # per unit, excluding the multiplier
    realized_pnl: float = 0.0  # net of commissions
    commissions: float = 0.0
    strategy_id: str | None = None  # None for the account-wide aggregate
    opened_ts: float | None = None

    @property
    def symbol(self) -> str:
        return self.instrument.key

    @property
    def multiplier(self) -> int:
        return self.instrument.multiplier

    @property
    def is_flat(self) -> bool:
        return abs(self.quantity) < 1e-9

    def market_value(self, mark: float) -> float:
        return self.quantity * mark * self.multiplier

    def unrealized_pnl(self, mark: float | None) -> float:
        if mark is None or self.is_flat:
            return 0.0
        return (mark - self.avg_cost) * self.quantity * self.multiplier

    def apply_fill(self, fill: Fill) -> Position:
        q0, q = self.quantity, fill.signed_quantity
        mult = self.multiplier
        realized = self.realized_pnl - fill.commission
        commissions = self.commissions + fill.commission
        new_q = q0 + q
        if abs(new_q) < 1e-9:
            new_q = 0.0
        if q0 == 0 or (q0 > 0) == (q > 0):
            # Opening or adding: the average cost moves.
            avg = (self.avg_cost * abs(q0) + fill.price * abs(q)) / abs(new_q) if new_q else 0.0
            opened = self.opened_ts if q0 else fill.ts
        else:
            closed = min(abs(q0), abs(q))
            direction = 1 if q0 > 0 else -1
            realized += (fill.price - self.avg_cost) * closed * direction * mult
            if new_q == 0:
                avg, opened = 0.0, None
            elif (new_q > 0) == (q0 > 0):
                avg, opened = self.avg_cost, self.opened_ts
            else:  # reversed through zero: the remainder opens at the fill price
                avg, opened = fill.price, fill.ts
        return dataclasses.replace(
            self,
            quantity=new_q,
            avg_cost=avg,
            realized_pnl=realized,
            commissions=commissions,
            opened_ts=opened,
        )


def positions_from_fills(fills: list[Fill], *, by_strategy: bool = False) -> dict[Any, Position]:
    """Fold fills into positions keyed by instrument key (or (strategy, key))."""
    out: dict[Any, Position] = {}
    for f in fills:
        k = (f.strategy_id, f.instrument.key) if by_strategy else f.instrument.key
        pos = out.get(k) or Position(
            f.instrument, strategy_id=f.strategy_id if by_strategy else None
        )
        out[k] = pos.apply_fill(f)
    return out
