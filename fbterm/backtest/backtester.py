"""CustomBacktester: runs any StrategyInterface on historical bars, two ways that agree.

* **fast** (default, :mod:`fbterm.backtest.fast`): ``analyze`` once over the whole history,
  then a simulation that steps only from one target change to the next (one Python step per
  order; the equity curve, positions and trades are built with numpy from the fills).
* **replay** (:mod:`fbterm.backtest.replay`): bars one at a time through ``on_bar`` ->
  ``execute`` -> risk gate -> the paper broker's fill model, as the live engine does.

Conventions (those of backtesting.py, so a peer can check us; the user-facing statement is
:mod:`fbterm.backtest.conventions`, printed by ``fbterm backtest --help``):

* the target from bar t is acted on at bar t+1's open: ``execute`` runs with ``ctx.price`` =
  that open and ``ctx.equity`` marked at it (live, a bar closes when the next price arrives,
  and the engine sizes at that price too), and its market orders fill at that open through
  :func:`fbterm.execution.brokers.fills.match_order`;
* commission is a fraction of traded value or IB per-share, charged on every fill (entry and
  exit alike), from the same commission models as paper trading (:mod:`fbterm.execution.costs`);
* sizing modes fixed / cash / fraction / all_in via :func:`fbterm.strategies.base.sizer`;
  fraction and all_in buy whole units with the equity left after the closing leg's commission;
* margin (:mod:`fbterm.execution.margin`, the paper venue's rule): a cash account; an order
  adding more than the buying power is cut to its closing part; at the first close where
  equity is 0 or less every position is closed at that close and equity stays 0;
* a position still open at the end is marked at the last close in the equity curve but is not
  a closed trade;
* stop-loss / take-profit / trailing stop (StrategyRiskConfig, in percent, price points or
  money) are checked on every bar from the entry bar on, after that bar's open fills
  (:func:`fbterm.risk.stops.bar_exit`): the stop first when both are touched; a stop fills at
  the stop or at the open when the bar gaps through it, a take-profit at its level or the open
  when it gaps beyond; after a stop, the strategy's next target acts even if it repeats
  (``forget_target``);
* ``risk_gate(order) -> reason | None`` is called for every order before it can fill, so the
  engine's pre-trade checks plug in unchanged; a rejected order is logged and never fills;
* metrics by ``stats``: fbterm's definitions or backtesting.py's (:mod:`fbterm.backtest.compat`),
  intraday days by the exchange ``calendar``'s sessions, durations on ``timezone``'s clock.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd

from fbterm.backtest.book import Book
from fbterm.backtest.fast import event_loop
from fbterm.backtest.inputs import BacktestError, make_commission, make_sizing, prepare_bars
from fbterm.backtest.metrics import DEFINITIONS
from fbterm.backtest.replay import Progress, bar_loop
from fbterm.backtest.result import BacktestResult, build_result
from fbterm.backtest.venue import BarVenue, RiskGate
from fbterm.config import StrategyRiskConfig
from fbterm.execution.costs import CommissionModel
from fbterm.execution.margin import CASH_ACCOUNT, MarginRule
from fbterm.model import instrument_from_key
from fbterm.risk.stops import StopRules
from fbterm.sessions import DEFAULT_CALENDAR
from fbterm.strategies.base import Sizing, StrategyError, StrategyInterface

MODES = ("fast", "replay")


class CustomBacktester:
    """Backtest one strategy on one symbol's bars.

    ``commission``: a fraction of traded value (0.002), ``'ib'`` for IB per-share pricing, or a
    commission model. ``sizing``: a :class:`Sizing` or a mode name. ``risk``: stop-loss /
    take-profit rules. ``risk_gate``: pre-trade check, ``order -> reason or None``.
    """

    def __init__(
        self,
        bars: pd.DataFrame,
        strategy: StrategyInterface,
        *,
        cash: float = 10_000.0,
        commission: float | str | CommissionModel | None = 0.0,
        sizing: Sizing | str | None = "all_in",
        symbol: str = "SYM",
        risk: StrategyRiskConfig | None = None,
        risk_gate: RiskGate | None = None,
        mode: str = "fast",
        rate: float = 0.04,
        option_vol_window: int = 20,
        progress: Progress | None = None,
        margin: MarginRule = CASH_ACCOUNT,
        timezone: str = "America/New_York",
        calendar: str | None = DEFAULT_CALENDAR,
        stats: str = "fbterm",
    ):
        if not (cash > 0 and math.isfinite(cash)):
            raise BacktestError(f"cash must be > 0, got {cash!r}")
        _check_mode(mode)
        self.bars = prepare_bars(bars)
        self.strategy = strategy
        self.cash = float(cash)
        self.commission = make_commission(commission)
        self.sizing = make_sizing(sizing)
        self.symbol = symbol
        self.stops = StopRules.from_config(risk)
        self.risk_gate = risk_gate
        self.mode = mode
        self.rate = rate
        self.option_vol_window = option_vol_window
        self.progress = progress
        self.margin = margin
        if stats not in DEFINITIONS:
            raise BacktestError(f"stats must be one of {', '.join(DEFINITIONS)}, got {stats!r}")
        self.timezone = timezone
        self.calendar = calendar
        self.stats = stats
        self.result: BacktestResult | None = None
        n = len(self.bars)
        need = strategy.warmup()
        if need > n:
            raise BacktestError(
                f"window longer than the data: {strategy.name or type(strategy).__name__} needs "
                f"{need} bars, the data has {n}"
            )
        self.venue = BarVenue(
            self.bars,
            symbol=symbol,
            strategy_id=strategy.strategy_id,
            commission=self.commission,
            risk_gate=risk_gate,
            rate=rate,
            option_vol_window=option_vol_window,
        )

    def run_backtest(self, mode: str | None = None) -> BacktestResult:
        """Run the strategy over the bars; metrics included."""
        mode = mode or self.mode
        _check_mode(mode)
        t0 = time.perf_counter()
        strat = self.strategy
        strat.reset()
        venue = self.venue
        venue.reset()
        book = Book(self.cash)
        signals: pd.DataFrame | None = None
        # Bracket exits are checked on every bar: a strategy that places them takes the bar path.
        every_bar = bool(getattr(strat, "execute_every_bar", False)) or bool(
            getattr(strat, "uses_brackets", False)
        )
        try:
            if mode == "replay":
                bar_loop(venue, book, strat, self.sizing, self.stops, None, self.progress)
            else:
                signals = strat.analyze(self.bars)
                if "target" not in signals or len(signals) != len(self.bars):
                    raise BacktestError(
                        f"strategy {strat.strategy_id}: analyze must return a 'target' column for every bar"
                    )
                target = signals["target"].to_numpy(dtype=float)
                if every_bar:
                    bar_loop(venue, book, strat, self.sizing, self.stops, target, self.progress)
                else:
                    event_loop(venue, book, strat, self.sizing, self.stops, target, signals)
        except (BacktestError, StrategyError):
            raise
        except Exception as e:
            raise BacktestError(
                f"strategy {strat.strategy_id} raised {type(e).__name__}: {e}"
            ) from e
        tz = self.timezone
        result = build_result(venue, book, self.bars, strat, signals, mode, self.cash, tz)
        eq = result.equity.to_numpy()
        # A cash account is only closed out at equity 0: one pass finds there is none.
        if result.position is not None and (self.margin.maintenance > 0 or eq.min() <= 0):
            mult = instrument_from_key(venue.symbol).multiplier  # a future's point value
            gross = np.abs(result.position.to_numpy()) * venue.c * mult
            out = self.margin.liquidation_mask(eq, gross)
            if out.any():
                venue.liquidate(book, int(np.argmax(out)))
                result = build_result(venue, book, self.bars, strat, signals, mode, self.cash, tz)
        result.elapsed = time.perf_counter() - t0
        self.result = result
        result.metrics = self.calculate_performance_metrics(result)
        if self.progress:
            self.progress(1.0)
        return result

    def calculate_performance_metrics(
        self, result: BacktestResult | None = None, stats: str | None = None
    ) -> pd.Series:
        """The metrics of ``result`` (default: the last run) as one Series, by the ``stats``
        definitions ("fbterm" or "backtesting"; default the backtester's); see metrics."""
        from fbterm.backtest.metrics import performance_metrics

        res = result or self.result
        if res is None:
            raise BacktestError("run_backtest() first")
        return performance_metrics(
            res.equity,
            res.trades,
            res.bars["close"],
            warmup_bar=res.warmup_bar,
            position=res.position,
            commissions=float(res.fills["commission"].sum()) if len(res.fills) else 0.0,
            calendar=self.calendar,
            clock_tz=self.timezone,
            definitions=stats or self.stats,
            timezone=self.timezone,
        )


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise BacktestError(f"mode must be 'fast' or 'replay', got {mode!r}")
