"""Performance metrics (real-time and post-trade) and half-Kelly capital allocation.

* :mod:`~fbterm.metrics.trades`: FIFO round trips, excursions (MAE/MFE), slippage, fill rate;
* :mod:`~fbterm.metrics.live`: :class:`MetricsCalculation`, the live per-strategy and
  portfolio numbers;
* :mod:`~fbterm.metrics.reports`: daily aggregates, daily report files, SQLite persistence;
* :mod:`~fbterm.metrics.optimization`: :class:`Optimization`, half-Kelly rebalancing.

Sharpe, drawdown and Kelly maths live in :mod:`fbterm.stats`, shared with the backtester and
risk.
"""

from __future__ import annotations

from fbterm.metrics.live import MetricsCalculation, MetricsSnapshot, PerformanceMetrics
from fbterm.metrics.optimization import (
    KellyDecision,
    Optimization,
    RebalanceResult,
    StrategyHistory,
    half_kelly_allocations,
    kelly_for,
)
from fbterm.metrics.reports import (
    PORTFOLIO,
    DailyTradeStats,
    PostTradeMetrics,
    daily_aggregates,
    load_trades,
    store_metrics,
    write_daily_report,
)
from fbterm.metrics.trades import (
    ClosedTrade,
    FifoMatcher,
    excursions,
    fill_rate,
    fill_slippage,
    match_round_trips,
    price_path_from_bars,
)

__all__ = [
    "PORTFOLIO",
    "ClosedTrade",
    "DailyTradeStats",
    "FifoMatcher",
    "KellyDecision",
    "MetricsCalculation",
    "MetricsSnapshot",
    "Optimization",
    "PerformanceMetrics",
    "PostTradeMetrics",
    "RebalanceResult",
    "StrategyHistory",
    "daily_aggregates",
    "excursions",
    "fill_rate",
    "fill_slippage",
    "half_kelly_allocations",
    "kelly_for",
    "load_trades",
    "match_round_trips",
    "price_path_from_bars",
    "store_metrics",
    "write_daily_report",
]
