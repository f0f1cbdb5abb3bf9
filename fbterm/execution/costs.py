"""Commission models, as pure functions of quantity and price.

One place for what a fill costs: the paper broker, both backtest paths and the backtest CLI
all price commission with these models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fbterm.config import PaperBrokerConfig

# Names that mean IB's fixed per-share pricing, wherever a commission is given as text.
PER_SHARE_NAMES = ("per_share", "ib", "fixed")


@dataclass(frozen=True, slots=True)
class PerShareCommission:
    """IB's fixed pricing: a rate per share (per contract for options), a minimum per order,
    and a cap as a fraction of the trade value."""

    per_share: float = 0.005
    minimum: float = 1.0
    max_fraction: float = 0.01
    per_contract: float = 0.65  # options

    def __call__(self, quantity: float, price: float, multiplier: int = 1) -> float:
        if quantity <= 0:
            return 0.0
        if multiplier > 1:
            return max(self.per_contract * quantity, self.minimum)
        fee = max(self.per_share * quantity, self.minimum)
        cap = self.max_fraction * quantity * price
        return min(fee, cap) if cap > 0 else fee


@dataclass(frozen=True, slots=True)
class FractionCommission:
    """A fraction of the traded value (backtesting.py's ``commission=0.002``)."""

    fraction: float = 0.0

    def __call__(self, quantity: float, price: float, multiplier: int = 1) -> float:
        return abs(quantity) * price * multiplier * self.fraction


CommissionModel = PerShareCommission | FractionCommission


def commissions(model: CommissionModel, quantity: Any, price: Any) -> Any:
    """The model's ``__call__`` over numpy arrays of quantities and prices (stocks,
    multiplier 1): element for element the same arithmetic; a test holds the twins equal."""
    import numpy as np

    q = np.asarray(quantity, dtype=np.float64)
    px = np.asarray(price, dtype=np.float64)
    if isinstance(model, FractionCommission):
        fee = np.abs(q) * px * 1 * model.fraction
    else:
        fee = np.maximum(model.per_share * q, model.minimum)
        cap = model.max_fraction * q * px
        fee = np.where(cap > 0, np.minimum(fee, cap), fee)
    return np.where(q > 0, fee, 0.0) if not isinstance(model, FractionCommission) else fee


def commission_model(kind: str, **kw: float) -> CommissionModel:
    if kind in PER_SHARE_NAMES:
        return PerShareCommission(**kw)
    if kind in ("percent", "fraction"):
        return FractionCommission(**kw)
    raise ValueError(f"unknown commission model {kind!r}: expected 'per_share' or 'percent'")


def commission_from_config(cfg: PaperBrokerConfig) -> CommissionModel:
    """The paper broker's commission model from its configuration."""
    if cfg.commission == "percent":
        return FractionCommission(cfg.commission_fraction)
    return PerShareCommission(
        per_share=cfg.commission_per_share,
        minimum=cfg.commission_minimum,
        max_fraction=cfg.commission_max_fraction,
        per_contract=cfg.commission_per_contract,
    )


def commission_fraction(model: CommissionModel) -> float:
    """The share of traded value a model charges, for sizing that must leave room for it
    (all-in sizing); 0 for per-share pricing, whose cost sizing does not anticipate."""
    return model.fraction if isinstance(model, FractionCommission) else 0.0
