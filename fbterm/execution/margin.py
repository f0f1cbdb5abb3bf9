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
