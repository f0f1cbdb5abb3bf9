"""Portfolio backtests of a config: every configured strategy on its symbols, on one clock.

Each (strategy, symbol) is a leg that steps exactly as a single backtest's replay path does
(:class:`fbterm.backtest.replay.BarStepper`: the strategy's own ``execute``, the fill model,
commission, sizing and stop rules), so a config with one strategy on one symbol books the
single backtest's trades. What a portfolio adds is what the engine adds live, through the
same components:

* every order passes :meth:`fbterm.risk.portfolio.PortfolioLevelRisk.check_order` with the
  config's ``[risk]`` limits, reading positions and marks across all legs;
* after each timestamp the account's equity goes to ``update_equity``, whose drawdown and
  daily-loss limits halt trading: from then on the strategies send nothing (the live
  executor holds halted strategies) and the gate refuses whatever else comes (stop exits);
  positions stay open, marked to market, as they do live until the operator acts, or
  (``on_halt="flatten"``) are closed at each symbol's next open by an operator exit, the
  one kind of order the gate lets through a halt;
* every ``metrics.rebalance_interval`` seconds of market time (or ``rebalance``) capital
  moves between strategies by :meth:`fbterm.metrics.optimization.Optimization.apply_half_kelly`;
* sizing follows the config (:func:`fbterm.strategies.executor.configured_sizing`) on the
  strategy's equity across its symbols, commission the paper broker's model.

A leg's target comes from ``analyze`` once over its history (``mode="fast"``) or bar by bar
from ``on_bar`` (``"replay"``), as in a single backtest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from fbterm.backtest.book import Book
from fbterm.backtest.inputs import BacktestError, prepare_bars
from fbterm.backtest.metrics import performance_metrics
from fbterm.backtest.replay import BarStepper
from fbterm.backtest.result import BacktestResult, build_result
from fbterm.backtest.venue import BarVenue
from fbterm.config import Config
from fbterm.execution.costs import commission_from_config
from fbterm.metrics.optimization import Optimization, StrategyHistory
from fbterm.model import Option, Order, Side, Signal, TradingState
from fbterm.risk.portfolio import PortfolioLevelRisk
from fbterm.risk.stops import StopRules
from fbterm.strategies import create_strategy
from fbterm.strategies.base import StrategyError, StrategyInterface
from fbterm.strategies.executor import clone_strategy, configured_sizing


@dataclass
class Leg:
    """One strategy on one symbol."""

    slot: str
    symbol: str
    strategy: StrategyInterface
    venue: BarVenue
    book: Book
    stepper: BarStepper
    bars: pd.DataFrame
    at: np.ndarray  # each local bar's position on the portfolio clock
    signals: pd.DataFrame | None
    i: int = -1  # last local bar stepped

    def mark(self, marks: dict[str, float]) -> float:
        """Cash plus positions at the current marks (options by the model at the last close)."""
        eq = self.book.cash
        for key, q in self.book.pos.items():
            inst = self.book.insts[key]
            if isinstance(inst, Option):
                if self.i >= 0:
                    v = self.venue
                    px = v.options.price(inst, v.c[self.i], v.ts[self.i], self.i)
                    eq += q * inst.multiplier * px
            else:
                eq += q * marks.get(key, 0.0) * inst.multiplier
        return eq


@dataclass
class Slot:
    """One configured strategy: its capital and its legs."""

    name: str
    capital: float
    legs: list[Leg]
    returns: list[float] = field(default_factory=list)  # per clock step, for Kelly
    capital_at: list[tuple[int, float]] = field(default_factory=list)  # (clock step, capital)


@dataclass
class PortfolioResult:
    equity: pd.Series  # the account
    strategies: pd.DataFrame  # each strategy's equity (capital + P&L); metrics use its returns
    exposure: pd.Series  # gross exposure / account equity
    metrics: pd.Series  # the account's
    strategy_metrics: pd.DataFrame  # one row per strategy
    correlation: pd.DataFrame  # of the strategies' daily returns
    trades: pd.DataFrame  # every leg's, with strategy and symbol
    legs: dict[tuple[str, str], BacktestResult]
    events: pd.DataFrame  # halts, rebalances, rejected orders
    cash: float = 0.0


class _Inputs:
    """What the risk gate reads (:class:`fbterm.risk.portfolio.RiskInputs`), across all legs."""

    def __init__(self, legs: list[Leg], marks: dict[str, float]) -> None:
        self.legs = legs
        self.marks = marks

    def last_price(self, key: str) -> float | None:
        return self.marks.get(key)

    def position(self, key: str) -> float:
        return sum(leg.book.pos.get(key, 0.0) for leg in self.legs)

    def strategy_position(self, strategy_id: str, key: str) -> float:
        return sum(leg.book.pos.get(key, 0.0) for leg in self.legs if leg.slot == strategy_id)

    def gross_exposure(self) -> float:
        total = 0.0
        for leg in self.legs:
            for key, q in leg.book.pos.items():
                px = self.marks.get(key)
                if px is not None:
                    total += abs(q * px * leg.book.insts[key].multiplier)
        return total

    def stale_age(self, symbol: str) -> float | None:
        return None  # bars from files are never stale


class PortfolioBacktest:
    """The configured strategies on ``data`` (bars by symbol) together."""

    def __init__(
        self,
        cfg: Config,
        data: dict[str, pd.DataFrame],
        *,
        mode: str = "fast",
        rebalance: float | None = None,
        on_halt: str = "hold",
    ) -> None:
        if mode not in ("fast", "replay"):
            raise BacktestError(f"mode must be 'fast' or 'replay', got {mode!r}")
        if on_halt not in ("hold", "flatten"):
            raise BacktestError(f"on_halt must be 'hold' or 'flatten', got {on_halt!r}")
        self.on_halt = on_halt
        self._operator = False  # an operator exit is going out (it may pass a halt)
        self._flatten: set[int] = set()  # legs (by id) still to flatten after a halt
        self.cfg = cfg
        self.mode = mode
        self.interval = cfg.metrics.rebalance_interval if rebalance is None else rebalance
        self.cash = cfg.broker.paper.cash
        self.commission = commission_from_config(cfg.broker.paper)
        bars = {s: prepare_bars(b) for s, b in data.items()}
        enabled = [sc for sc in cfg.strategies if sc.enabled]
        if not enabled:
            raise BacktestError("the config has no enabled [[strategies]] to backtest")
        stamps = [b.index for b in bars.values()]
        clock = stamps[0]
        for ix in stamps[1:]:
            clock = clock.union(ix)
        self.clock = clock
        self.ts = _seconds(clock)
        self.marks: dict[str, float] = {}
        self.events: list[tuple[Any, str, str, str]] = []  # time, kind, strategy, detail
        self.slots: list[Slot] = []
        legs: list[Leg] = []
        for sc in enabled:
            symbols = sc.symbols or list(cfg.market.symbols)
            try:
                template = create_strategy(sc.cls, sc.name, sc.params)
            except StrategyError as e:
                raise BacktestError(f"strategies.{sc.name}: {e}") from None
            sizing = configured_sizing(sc.sizing, sc.capital, len(symbols))
            slot = Slot(sc.name, sc.capital, [], capital_at=[(0, sc.capital)])
            for k, sym in enumerate(symbols):
                if sym not in bars:
                    raise BacktestError(f"strategies.{sc.name}: no bars for {sym}")
                strat = template if k == 0 else clone_strategy(template)
                strat.strategy_id = sc.name
                strat.reset()
                leg = self._leg(slot, sym, strat, bars[sym], sizing, StopRules.from_config(sc.risk))
                slot.legs.append(leg)
                legs.append(leg)
            self.slots.append(slot)
        self.legs = legs
        self.risk = PortfolioLevelRisk(
            cfg.risk,
            _Inputs(legs, self.marks),
            clock=lambda: self._now,
            on_state_change=self._state_changed,
        )
        self._now = float(self.ts[0]) if len(self.ts) else 0.0
        self._step = 0

    def _leg(
        self,
        slot: Slot,
        sym: str,
        strat: StrategyInterface,
        bars: pd.DataFrame,
        sizing: Any,
        stops: StopRules | None,
    ) -> Leg:
        need = strat.warmup()
        if need > len(bars):
            raise BacktestError(
                f"strategies.{slot.name}: {sym} has {len(bars)} bars, the strategy needs {need}"
            )
        first = not slot.legs
        venue = BarVenue(
            bars,
            symbol=sym,
            strategy_id=slot.name,
            commission=self.commission,
            risk_gate=None,
            rate=self.cfg.market.simulated.risk_free_rate,
            option_vol_window=20,
        )
        # The strategy's capital sits in its first leg's book, so a strategy on one symbol
        # has exactly a single backtest's book; its other legs hold only their P&L.
        book = Book(slot.capital if first else 0.0)
        signals = None
        target = None
        if self.mode == "fast":
            signals = strat.analyze(bars)
            if "target" not in signals or len(signals) != len(bars):
                raise BacktestError(
                    f"strategy {slot.name}: analyze must return a 'target' column for every bar"
                )
            target = signals["target"].to_numpy(dtype=float)
        venue.risk_gate = self._gate(slot.name)
        stepper = BarStepper(
            venue,
            book,
            strat,
            sizing,
            stops,
            target,
            equity=None if first else (lambda i: self._slot_equity_at_open(slot, venue, book, i)),
            # Strategies with their own execute read analyze's columns, as in a single run.
            signals=signals
            if signals is not None
            and type(strat).execute is not StrategyInterface.execute
            and not getattr(strat, "execute_every_bar", False)
            else None,
        )
        at = self.clock.get_indexer(bars.index)
        return Leg(slot.name, sym, strat, venue, book, stepper, bars, at, signals)

    def _gate(self, name: str) -> Any:
        def gate(order: Order) -> str | None:
            reason = self.risk.check_order(order, operator=self._operator)
            if reason:
                self.events.append((self.clock[self._step], "rejected", name, reason))
            return reason

        return gate

    def _state_changed(self, state: TradingState, reason: str) -> None:
        self.events.append((self.clock[self._step], state.value.lower(), "", reason))
        for leg in self.legs:
            leg.stepper.trading = state is not TradingState.HALTED
        if state is TradingState.HALTED and self.on_halt == "flatten":
            self._flatten = {id(leg) for leg in self.legs}

    def _flatten_leg(self, leg: Leg, i: int) -> None:
        """Close the leg's positions at bar ``i``'s open, as the operator's exit."""
        self._flatten.discard(id(leg))
        book, venue = leg.book, leg.venue
        self._operator = True
        try:
            for key, q in list(book.pos.items()):
                sig = Signal(
                    strategy_id=leg.slot,
                    instrument=book.insts[key],
                    side=Side.SELL if q > 0 else Side.BUY,
                    quantity=abs(q),
                    signal_price=float(venue.o[i]),
                    ts=float(venue.ts[i]),
                    reason="flatten on halt",
                )
                venue.submit(book, sig, i)
        finally:
            self._operator = False

    def _slot_equity_at_open(self, slot: Slot, venue: BarVenue, book: Book, i: int) -> float:
        """A strategy's equity across its symbols when one of them opens bar ``i``."""
        eq = venue.equity_at_open(book, i)
        for other in slot.legs:
            if other.book is not book:
                eq += other.mark(self.marks)
        return eq

    def slot_equity(self, slot: Slot) -> float:
        return sum(leg.mark(self.marks) for leg in slot.legs)

    # -- the run -------------------------------------------------------------------------
    def run(self) -> PortfolioResult:
        n = len(self.clock)
        by_step: list[list[Leg]] = [[] for _ in range(n)]
        for leg in self.legs:
            for g in leg.at.tolist():
                by_step[g].append(leg)
        account = np.empty(n)
        gross = np.empty(n)
        slot_eq = np.empty((n, len(self.slots)))
        last_rebalance = float(self.ts[0]) if n else 0.0
        prev = [s.capital for s in self.slots]
        inputs = _Inputs(self.legs, self.marks)
        for g in range(n):
            self._step = g
            self._now = float(self.ts[g])
            for leg in by_step[g]:
                i = leg.i + 1
                self.marks[leg.symbol] = float(leg.venue.o[i])
                if self._flatten and id(leg) in self._flatten:
                    self._flatten_leg(leg, i)
                leg.stepper.step(i)
                leg.i = i
                self.marks[leg.symbol] = float(leg.venue.c[i])
            pnl = 0.0
            for k, slot in enumerate(self.slots):
                eq = self.slot_equity(slot)
                slot_eq[g, k] = eq
                base = prev[k]
                slot.returns.append((eq - base) / base if base > 0 else math.nan)
                prev[k] = eq
                pnl += eq - slot.capital
            account[g] = self.cash + pnl
            gross[g] = inputs.gross_exposure()
            if account[g] <= 0:
                self._wipe_out(g, account, gross, slot_eq)
                break
            self.risk.update_equity(float(account[g]), self._now)
            if self.interval > 0 and self._now - last_rebalance >= self.interval:
                last_rebalance = self._now
                self._rebalance(g, prev)
        return self._result(account, gross, slot_eq)

    def _wipe_out(
        self, g: int, account: np.ndarray, gross: np.ndarray, slot_eq: np.ndarray
    ) -> None:
        """The account's equity is 0 or less at step ``g``: every position is closed at this
        bar's close and nothing trades again; the account stays at 0, the deficit written off
        (a single backtest's rule, conventions "margin"). The strategies' own equity curves
        keep what they had when it happened."""
        self.events.append(
            (
                self.clock[g],
                "liquidated",
                "",
                f"account equity {account[g]:,.2f} <= 0: every position closed, trading ended",
            )
        )
        for leg in self.legs:
            if leg.i >= 0:
                leg.venue.close_out(leg.book, leg.i)
                self.marks[leg.symbol] = float(leg.venue.c[leg.i])
        for k, slot in enumerate(self.slots):
            before, eq = slot_eq[g, k], self.slot_equity(slot)
            # This step's return, now including the close-out's costs.
            if before > 0:
                slot.returns[-1] = (1.0 + slot.returns[-1]) * eq / before - 1.0
            slot_eq[g:, k] = eq
            slot.returns.extend([0.0] * (len(self.clock) - g - 1))
        account[g:] = 0.0
        gross[g:] = 0.0

    def _rebalance(self, g: int, prev: list[float]) -> None:
        by_name = {s.name: (k, s) for k, s in enumerate(self.slots)}

        def scale(name: str, capital: float) -> None:
            k, slot = by_name[name]
            delta = capital - slot.capital
            slot.capital = capital
            slot.legs[0].book.cash += delta
            slot.capital_at.append((g, capital))
            prev[k] += delta  # a new allocation is not a return
            self.events.append((self.clock[g], "rebalance", name, f"capital -> {capital:,.0f}"))

        m = self.cfg.metrics
        Optimization(cap=m.kelly_cap, min_observations=m.kelly_min_observations).apply_half_kelly(
            scale,
            {s.name: StrategyHistory(returns=tuple(s.returns)) for s in self.slots},
            current={s.name: s.capital for s in self.slots},
        )

    def _result(
        self, account: np.ndarray, gross: np.ndarray, slot_eq: np.ndarray
    ) -> PortfolioResult:
        clock = self.clock
        legs: dict[tuple[str, str], BacktestResult] = {}
        trades: list[pd.DataFrame] = []
        for leg in self.legs:
            res = build_result(
                leg.venue,
                leg.book,
                leg.bars,
                leg.strategy,
                leg.signals,
                self.mode,
                0.0,
                self.cfg.market.timezone,  # durations on the market's wall clock, as a backtest
            )
            legs[(leg.slot, leg.symbol)] = res
            if len(res.trades):
                t = res.trades.copy()
                t.insert(0, "strategy", leg.slot)
                t.insert(1, "symbol", leg.symbol)
                trades.append(t)
        all_trades = (
            pd.concat(trades, ignore_index=True).sort_values("exit_time", kind="stable")
            if trades
            else pd.DataFrame(columns=["strategy", "symbol"])
        )
        equity = pd.Series(account, index=clock, name="equity")
        strategies = pd.DataFrame(slot_eq, index=clock, columns=[s.name for s in self.slots])
        exposure = pd.Series(
            np.where(account > 0, gross / np.where(account > 0, account, 1.0) * 100, np.nan),
            index=clock,
            name="gross_exposure_pct",
        )
        # Each strategy's performance as a time-weighted index: its returns net of capital
        # moves, chained from its first allocation, so a rebalance is not a gain or a loss.
        twr = pd.DataFrame(
            {
                s.name: s.capital_at[0][1]
                * np.cumprod(1.0 + np.nan_to_num(np.asarray(s.returns), nan=0.0))
                for s in self.slots
            },
            index=clock,
        )
        rows = []
        for slot in self.slots:
            eq = twr[slot.name]
            st = all_trades[all_trades["strategy"] == slot.name] if len(all_trades) else all_trades
            held = pd.Series(
                np.any(
                    [
                        pd.Series(
                            _position(legs[(slot.name, lg.symbol)]) != 0,
                            index=lg.bars.index,
                        )
                        .reindex(clock, method="ffill")
                        .fillna(False)
                        .to_numpy(dtype=bool)
                        for lg in slot.legs
                    ],
                    axis=0,
                ).astype(float),
                index=clock,
            )
            close = slot.legs[0].bars["close"].reindex(clock, method="ffill").bfill()
            m = performance_metrics(
                eq,
                _trade_frame(st, clock),
                close,
                position=held,
                commissions=float(st["commission"].sum()) if len(st) else 0.0,
                calendar=self.cfg.market.calendar,
            )
            rows.append(
                {
                    "strategy": slot.name,
                    "symbols": " ".join(lg.symbol for lg in slot.legs),
                    "capital": slot.capital_at[0][1],
                    "final_capital": slot.capital,
                    **{k: m[k] for k in _STRATEGY_KEYS},
                    "rejected": sum(
                        1 for e in self.events if e[1] == "rejected" and e[2] == slot.name
                    ),
                }
            )
        acct = performance_metrics(
            equity,
            _trade_frame(all_trades, clock),
            close=equity,
            position=gross_held(gross, clock),
            commissions=float(all_trades["commission"].sum()) if len(all_trades) else 0.0,
            calendar=self.cfg.market.calendar,
        )
        daily = (
            twr.resample("D").last().dropna(how="all")
            if isinstance(clock, pd.DatetimeIndex)
            else twr
        )
        corr = daily.pct_change(fill_method=None).corr()
        events = pd.DataFrame(self.events, columns=["time", "event", "strategy", "detail"])
        return PortfolioResult(
            equity,
            strategies,
            exposure,
            acct,
            pd.DataFrame(rows),
            corr,
            all_trades,
            legs,
            events,
            self.cash,
        )


_STRATEGY_KEYS = (
    "return_pct",
    "sharpe",
    "max_drawdown_pct",
    "trades",
    "win_rate_pct",
    "exposure_pct",
)


def _trade_frame(trades: pd.DataFrame, clock: pd.Index) -> pd.DataFrame:
    """Trades as performance_metrics reads them, their exit bars on the portfolio's clock."""
    if not len(trades):
        return pd.DataFrame(columns=["pnl", "return_pct", "duration", "commission", "exit_bar"])
    out = trades[["pnl", "return_pct", "duration", "commission"]].copy()
    out["exit_bar"] = clock.get_indexer(pd.Index(trades["exit_time"]))
    return out


def gross_held(gross: np.ndarray, clock: pd.Index) -> pd.Series:
    """1 where the account holds any position, for the exposure metric."""
    return pd.Series((gross > 0).astype(float), index=clock)


def _position(res: BacktestResult) -> np.ndarray:
    pos = res.position
    return np.zeros(len(res.equity)) if pos is None else pos.to_numpy(dtype=float)


def _seconds(index: pd.Index) -> np.ndarray:
    from fbterm.backtest.inputs import bar_seconds

    return bar_seconds(index)


def load_portfolio_data(cfg: Config, folder: str) -> dict[str, pd.DataFrame]:
    """Bars for every symbol the enabled strategies trade: ``SYMBOL.csv`` in ``folder``
    (any case), loaded as a single backtest loads its file."""
    from pathlib import Path

    from fbterm.backtest.jobs import load_bars

    d = Path(folder).expanduser()
    if not d.is_dir():
        raise BacktestError(f"--data {folder}: with --config, a folder of SYMBOL.csv files")
    files = {p.stem.upper(): p for p in d.glob("*.csv")} | {
        p.stem.upper(): p for p in d.glob("*.CSV")
    }
    out: dict[str, pd.DataFrame] = {}
    for sc in cfg.strategies:
        if not sc.enabled:
            continue
        for sym in sc.symbols or cfg.market.symbols:
            if sym in out:
                continue
            p = files.get(sym.upper())
            if p is None:
                raise BacktestError(
                    f"strategies.{sc.name}: no bars for {sym} in {d} (expected {sym}.csv)"
                )
            out[sym] = load_bars(p, cast(Any, cfg.data.on_bad_rows))
    return out
