"""fbterm: the Fahrenheit Black quantitative trading console.

The design document's classes are importable from here (``from fbterm import OrderManagement``);
they load on first use so that ``fbterm --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SEED_CLASSES = {
    "DataRetrieval": "fbterm.data.retrieval",
    "DataStorage": "fbterm.data.storage",
    "DataProcessing": "fbterm.data.processing",
    "StrategyInterface": "fbterm.strategies.base",
    "StrategyExecutor": "fbterm.strategies.executor",
    "StrategyLevelRisk": "fbterm.risk.strategy",
    "PortfolioLevelRisk": "fbterm.risk.portfolio",
    "CustomBacktester": "fbterm.backtest.backtester",
    "PerformanceAnalysis": "fbterm.backtest.analysis",
    "BrokerIntegration": "fbterm.execution.brokers.ib",
    "OrderManagement": "fbterm.execution.orders",
    "OrderQueue": "fbterm.execution.orders",
    "MetricsCalculation": "fbterm.metrics.live",
    "Optimization": "fbterm.metrics.optimization",
    "UpdatesManagement": "fbterm.ops.updates",
    "Diagnostics": "fbterm.ops.diagnostics",
    "PaperBroker": "fbterm.execution.brokers.paper",
    "Engine": "fbterm.engine",
}

__all__ = ["__version__", *_SEED_CLASSES]


def __getattr__(name: str) -> Any:
    mod = _SEED_CLASSES.get(name)
    if mod is None:
        raise AttributeError(f"module 'fbterm' has no attribute {name!r}")
    return getattr(importlib.import_module(mod), name)
