"""The operator-visible states of the whole book and of each strategy."""

from __future__ import annotations

from enum import StrEnum


class TradingState(StrEnum):
    """NautilusTrader's three states: everything, only what shrinks a position, nothing."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


class StrategyState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"
    ERROR = "error"
