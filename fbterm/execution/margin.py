"""Margin: what an account must hold against its positions, and when it is closed out.

One rule for the backtest and the paper venue, with two numbers:

* ``leverage``: the initial requirement is gross position value / leverage; buying power is
  what equity leaves above it, and new risk beyond it is refused;
* ``maintenance``: the maintenance requirement is gross position value x maintenance.

An account whose equity falls to or below the maintenance requirement is **liquidated**: every
position is closed at the current price. With ``maintenance = 0`` that is "equity reached zero"
(backtesting.py's rule). Between the two requirements the account is in a **margin call**: it
may only reduce risk, and the operator is told.

The backtest runs a cash account (leverage 1, maintenance 0, as backtesting.py's ``margin=1``):
on the first bar whose close leaves equity at or below zero every position is closed at that
close and equity is 0 from then on (the deficit is written off and the run stops trading). The
paper venue uses ``broker.paper.leverage`` and ``broker.paper.maintenance_margin`` and keeps a
deficit on its books, as a broker would bill it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]


class MarginStatus(StrEnum):
    OK = "ok"
    CALL = "margin call"
    LIQUIDATE = "liquidate"


@dataclass(frozen=True, slots=True)
class MarginRule:
    """An account's margin terms; see the module docstring."""

    leverage: float = 1.0
    maintenance: float = 0.0

    def __post_init__(self) -> None:
        if not self.leverage >= 1:
            raise ValueError(f"leverage must be >= 1, got {self.leverage!r}")
        if not 0 <= self.maintenance < 1 / self.leverage:
            raise ValueError(
                f"maintenance must be in [0, 1 / leverage), got {self.maintenance!r} "
                f"with leverage {self.leverage:g}"
            )

    def initial_requirement(self, gross: float) -> float:
        return gross / self.leverage

    def maintenance_requirement(self, gross: float) -> float:
        return gross * self.maintenance

    def buying_power(self, equity: float, gross: float) -> float:
        """What new positions may cost: equity x leverage less the gross value already held."""
        return max(equity * self.leverage - gross, 0.0)

    def admit(
        self,
        position: float,
        quantity: float,
        price: float,
        fee_per_unit: float,
        equity: float,
        gross_other: float = 0.0,
        multiplier: float = 1.0,
    ) -> float:
        """The part of an order for ``quantity`` (signed) the account takes, ``position`` being
        held in the instrument: all of it, or only the part that closes ``position`` when the
        part that adds risk would cost more than the buying power left after the closing part
        (backtesting.py's rule: the position is closed first, then the new part is cancelled
        whole when the margin does not cover it). ``equity`` is marked at ``price``;
        ``gross_other`` is the value of the other positions."""
        closing = 0.0
        if position and (position > 0) != (quantity > 0):
            closing = min(abs(quantity), abs(position))
        adding = abs(quantity) - closing
        if adding <= 1e-9:
            return quantity
        kept = abs(position) if closing == 0.0 else 0.0  # a same-side position stays held
        power = self.buying_power(
            equity - closing * fee_per_unit, gross_other + kept * price * multiplier
        )
        # A relative tolerance: float dust in a size that spends all the equity is not a refusal.
        if adding * (price * multiplier + fee_per_unit) > power * (1 + 1e-9) + 1e-9:
            return closing if quantity > 0 else -closing
        return quantity

    def status(self, equity: float, gross: float) -> MarginStatus:
        """Where an account with this equity and gross position value stands."""
        if equity <= gross * self.maintenance:
            return MarginStatus.LIQUIDATE
        if equity < gross / self.leverage:
            return MarginStatus.CALL
        return MarginStatus.OK

    def liquidation_mask(
        self, equity: npt.NDArray[np.float64], gross: npt.NDArray[np.float64]
    ) -> BoolArray:
        """:meth:`status` is LIQUIDATE, over arrays (a backtest's bars)."""
        return np.asarray(equity <= gross * self.maintenance, dtype=np.bool_)

    def describe(self, equity: float, gross: float) -> str:
        """The numbers behind the status, for a message."""
        return (
            f"equity {equity:,.2f}, gross positions {gross:,.2f}, maintenance "
            f"{self.maintenance_requirement(gross):,.2f} ({self.maintenance:.0%}), initial "
            f"{self.initial_requirement(gross):,.2f} (leverage {self.leverage:g})"
        )


CASH_ACCOUNT = MarginRule(1.0, 0.0)
"""The backtest's terms: no leverage, closed out when equity reaches zero (backtesting.py)."""
