"""Strategies: the interface, the built-ins and the registry that finds a class by name.

A spec is a built-in name (``sma_cross``) or ``package.module:ClassName`` for a user's own
strategy; :func:`load_strategy_class` resolves either, with an error that names the cause.
"""

from __future__ import annotations

import importlib
from typing import Any

from fbterm.strategies.base import (
    Param,
    Sizing,
    StrategyContext,
    StrategyError,
    StrategyInterface,
    target_quantity,
)
from fbterm.strategies.breakout import Breakout
from fbterm.strategies.covered_call import CoveredCall
from fbterm.strategies.mean_reversion import MeanReversion
from fbterm.strategies.sma_cross import SmaCross

STRATEGIES: dict[str, type[StrategyInterface]] = {
    cls.name: cls for cls in (SmaCross, MeanReversion, Breakout, CoveredCall)
}


def load_strategy_class(spec: str) -> type[StrategyInterface]:
    """The strategy class for a built-in name or ``package.module:ClassName``."""
    spec = (spec or "").strip()
    if spec in STRATEGIES:
        return STRATEGIES[spec]
    if ":" not in spec:
        raise StrategyError(
            f"unknown strategy {spec!r}: use one of {', '.join(STRATEGIES)} or 'package.module:ClassName'"
        )
    mod_name, _, cls_name = spec.partition(":")
    if not mod_name or not cls_name:
        raise StrategyError(f"strategy {spec!r}: expected 'package.module:ClassName'")
    try:
        mod = importlib.import_module(mod_name)
    except ModuleNotFoundError as e:
        raise StrategyError(f"strategy {spec!r}: module {e.name!r} not found") from None
    except Exception as e:  # a user's module failing at import: report it, one line
        raise StrategyError(
            f"strategy {spec!r}: importing {mod_name} failed: {type(e).__name__}: {e}"
        ) from None
    obj = getattr(mod, cls_name, None)
    if obj is None:
        raise StrategyError(f"strategy {spec!r}: module {mod_name} has no {cls_name!r}")
    if not (isinstance(obj, type) and issubclass(obj, StrategyInterface)):
        raise StrategyError(f"strategy {spec!r}: {cls_name} is not a StrategyInterface subclass")
    if getattr(obj, "__abstractmethods__", None):
        missing = ", ".join(sorted(obj.__abstractmethods__))
        raise StrategyError(f"strategy {spec!r}: {cls_name} does not implement {missing}")
    return obj


def create_strategy(
    spec: str, strategy_id: str | None = None, params: dict[str, Any] | None = None
) -> StrategyInterface:
    """An instance of the strategy ``spec`` with validated ``params``."""
    cls = load_strategy_class(spec)
    return cls(strategy_id, **(params or {}))


__all__ = [
    "STRATEGIES",
    "Breakout",
    "CoveredCall",
    "MeanReversion",
    "Param",
    "Sizing",
    "SmaCross",
    "StrategyContext",
    "StrategyError",
    "StrategyInterface",
    "create_strategy",
    "load_strategy_class",
    "target_quantity",
]
