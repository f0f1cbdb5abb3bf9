"""StrategyExecutor: many strategies at once, each with its own capital, positions and state.

Attribution: every order carries its strategy's id, and OrderManagement books each fill to the
strategy whose order it was, so two strategies trading one symbol keep separate positions and
P&L. Isolation: an exception inside a strategy puts that strategy in ERROR (with the message)
and pauses it; the others keep trading.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import math
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from fbterm.config import StrategyRiskConfig
from fbterm.execution.orders import OrderQueue, QueueFull
from fbterm.model import (
    Bar,
    OptionQuote,
    Order,
    OrderStatus,
    OrderType,
    Position,
    Side,
    Signal,
    StrategyState,
)
from fbterm.risk.strategy import StrategyLevelRisk
from fbterm.sessions import DEFAULT_CALENDAR, trading_day_clock
from fbterm.strategies.base import Fee, Sizing, StrategyContext, StrategyInterface

if TYPE_CHECKING:
    from fbterm.execution.orders import OrderManagement

LogFn = Callable[[str, str, str], None]  # level, kind, message


@dataclass(slots=True)
class StrategySlot:
    name: str
    strategy: StrategyInterface
    spec: str
    symbols: tuple[str, ...]
    capital: float
    sizing: Sizing
    risk: StrategyLevelRisk
    base_capital: float = 0.0
    state: StrategyState = StrategyState.RUNNING
    error: str = ""
    last_signal: str = ""
    last_signal_ts: float = 0.0
    orders_sent: int = 0
    orders_rejected: int = 0
    peak_equity: float = 0.0
    day_start_equity: float | None = None
    day: dt.date | None = None
    # (ts, equity, capital) samples: capital so returns can leave allocation changes out.
    history: list[tuple[float, float, float]] = field(default_factory=list)
    # One strategy object per symbol: streaming state (moving averages, channels) must never
    # mix two symbols' prices. ``strategy`` is the first symbol's, and the template.
    instances: dict[str, StrategyInterface] = field(default_factory=dict)

    def instance(self, symbol: str) -> StrategyInterface:
        inst = self.instances.get(symbol)
        if inst is None:  # a symbol it was not registered for (a hot update's new symbol)
            inst = self.instances[symbol] = clone_strategy(self.strategy)
            inst.reset()
        return inst


def configured_sizing(mode: str, capital: float, n_symbols: int) -> Sizing:
    """The sizing rule of a configured strategy's ``sizing`` mode (the engine and the
    portfolio backtest both size configured strategies with it)."""
    n = max(n_symbols, 1)
    if mode == "fixed":
        return Sizing("fixed", 100.0)
    if mode == "cash":
        return Sizing("cash", capital / n)
    if mode == "all_in":
        return Sizing("all_in", 1.0)
    return Sizing("fraction", 0.95 / n)


def clone_strategy(s: StrategyInterface) -> StrategyInterface:
    """A copy of ``s`` as it is now; taken before any bar, it is a fresh instance with the
    same parameters (a deep copy keeps whatever a custom ``__init__`` set up)."""
    return copy.deepcopy(s)


def per_symbol(s: StrategyInterface, symbols: Sequence[str]) -> dict[str, StrategyInterface]:
    """``s`` for the first symbol and fresh copies of it for the others."""
    out: dict[str, StrategyInterface] = {}
    for i, sym in enumerate(symbols):
        out[sym] = s if i == 0 else clone_strategy(s)
    return out


class StrategyExecutor:
    """Runs strategies on bars and turns their targets into orders through OrderManagement."""

    def __init__(
        self,
        oms: OrderManagement,
        *,
        commission_fraction: float = 0.0,
        option_chain: Callable[[str], Sequence[OptionQuote]] | None = None,
        marks: Callable[[str], float | None] | None = None,
        log: LogFn | None = None,
        clock: Callable[[], float] = time.time,
        queue: OrderQueue | None = None,
        calendar: str = DEFAULT_CALENDAR,
        fee: Fee | None = None,
    ):
        self.oms = oms
        self.fee = fee  # a commission sizing must leave room for (per share), as backtests do
        self.trading_day = trading_day_clock(calendar)
        self.commission_fraction = commission_fraction
        self.option_chain = option_chain
        self.marks = marks or (lambda key: None)
        self.log = log or (lambda level, kind, msg: None)
        self.clock = clock
        self.queue = queue
        self.slots: dict[str, StrategySlot] = {}
        self.epoch = 0  # bumped by the engine once per market-data step
        self._equity_cache: dict[str, tuple[int, float]] = {}
        self._by_symbol: dict[str, list[StrategySlot]] = {}
        self.on_error: Callable[[StrategySlot, BaseException], None] | None = None

    # -- registration --------------------------------------------------------------------
    def add_strategy(
        self,
        name: str,
        strategy: StrategyInterface,
        symbols: Sequence[str],
        capital: float,
        *,
        spec: str = "",
        sizing: Sizing | None = None,
        risk: StrategyRiskConfig | None = None,
        enabled: bool = True,
    ) -> StrategySlot:
        if name in self.slots:
            raise ValueError(f"strategy {name!r} is already running")
        strategy.strategy_id = name
        slot = StrategySlot(
            name=name,
            strategy=strategy,
            spec=spec or strategy.name,
            symbols=tuple(symbols),
            capital=float(capital),
            base_capital=float(capital),
            sizing=sizing or Sizing("fraction", 1.0 / max(len(symbols), 1)),
            risk=StrategyLevelRisk(name, risk),
            peak_equity=float(capital),
            state=StrategyState.RUNNING if enabled else StrategyState.PAUSED,
            instances=per_symbol(strategy, tuple(symbols)),
        )
        self.slots[name] = slot
        for s in slot.symbols:
            self._by_symbol.setdefault(s, []).append(slot)
        return slot

    def strategy(self, name: str) -> StrategyInterface:
        return self._slot(name).strategy

    def _slot(self, name: str) -> StrategySlot:
        try:
            return self.slots[name]
        except KeyError:
            raise KeyError(
                f"no strategy named {name!r} (running: {', '.join(self.slots) or 'none'})"
            ) from None

    # -- state ---------------------------------------------------------------------------
    def pause_strategy(self, name: str) -> None:
        slot = self._slot(name)
        if slot.state is StrategyState.RUNNING:
            slot.state = StrategyState.PAUSED

    def resume_strategy(self, name: str) -> None:
        slot = self._slot(name)
        slot.state = StrategyState.RUNNING
        slot.error = ""

    def replace_strategy(
        self, name: str, new: StrategyInterface, history: Mapping[str, Sequence[Bar]] | None = None
    ) -> StrategyInterface:
        """Swap in a new strategy object, keeping positions, orders and capital.

        Each symbol's new instance is warmed on ``history`` (bars it would have seen) and
        starts from the old instance's last target, so a swap does not re-trade a position.
        """
        slot = self._slot(name)
        old = slot.strategy
        new.strategy_id = name
        instances = per_symbol(new, slot.symbols)
        for sym, inst in instances.items():
            for bar in (history or {}).get(sym, ()):
                inst.on_bar(bar)
            prev = slot.instances.get(sym)
            t = prev.last_target(sym) if prev is not None else None
            inst.forget_target(sym)
            if t is not None:
                inst._last_target[sym] = t
        slot.strategy = new
        slot.instances = instances
        return old

    def set_halted(self, halted: bool) -> None:
        for slot in self.slots.values():
            if halted and slot.state is StrategyState.RUNNING:
                slot.state = StrategyState.HALTED
            elif not halted and slot.state is StrategyState.HALTED:
                slot.state = StrategyState.RUNNING

    # -- positions and equity ------------------------------------------------------------
    def positions_of(self, name: str) -> dict[str, Position]:
        return {key: p for key, p in self.oms.by_strategy.get(name, {}).items() if not p.is_flat}

    def pnl(self, name: str) -> tuple[float, float]:
        """(realised, unrealised) P&L of a strategy, unrealised at the current marks."""
        realized = unrealized = 0.0
        for key, p in self.oms.by_strategy.get(name, {}).items():
            realized += p.realized_pnl
            if not p.is_flat:
                unrealized += p.unrealized_pnl(self.marks(key))
        return realized, unrealized

    def equity(self, name: str) -> float:
        """Capital plus P&L at current marks, computed at most once per engine step (``epoch``):
        strategies size orders from it on every bar, and a step's own fills move it by far
        less than a share's worth."""
        slot = self._slot(name)
        cached = self._equity_cache.get(name)
        if cached is not None and cached[0] == self.epoch:
            return cached[1]
        r, u = self.pnl(name)
        eq = slot.capital + r + u
        self._equity_cache[name] = (self.epoch, eq)
        return eq

    def sample_equity(self, ts: float | None = None) -> None:
        """Record each strategy's equity (for drawdown, Sharpe and the Kelly sizing)."""
        now = ts or self.clock()
        day = self.trading_day(now)
        for slot in self.slots.values():
            eq = self.equity(slot.name)
            slot.peak_equity = max(slot.peak_equity, eq)
            if slot.day != day or slot.day_start_equity is None:
                slot.day, slot.day_start_equity = day, eq
            slot.history.append((now, eq, slot.capital))
            if len(slot.history) > 20_000:
                del slot.history[: len(slot.history) - 10_000]

    def scale_strategy(
        self, name: str, capital: float | None = None, *, factor: float | None = None
    ) -> float:
        """Set a strategy's capital allocation (or scale it by ``factor``); returns the new one.

        Positions are not touched: the new allocation sizes the strategy's next orders.
        """
        slot = self._slot(name)
        if capital is None:
            if factor is None:
                factor = self.performance_factor(name)
            capital = slot.capital * factor
        if not math.isfinite(capital) or capital < 0:
            raise ValueError(f"strategy {name}: capital must be >= 0, got {capital!r}")
        old, slot.capital = slot.capital, float(capital)
        self._equity_cache.pop(name, None)
        # Keep equity continuous: P&L so far stays P&L; the peak follows the allocation.
        slot.peak_equity = max(slot.peak_equity + (slot.capital - old), slot.capital)
        self.log("info", "strategy", f"{name}: allocation {old:,.0f} -> {slot.capital:,.0f}")
        return slot.capital

    def performance_factor(self, name: str) -> float:
        """The simple rule before Kelly sizing: cut a strategy in drawdown, grow a winner.

        Drawdown over 10% from its peak: x0.75. Return over 5% on its base capital: x1.1,
        up to twice the base allocation. Otherwise unchanged.
        """
        slot = self._slot(name)
        eq = self.equity(name)
        dd = 1 - eq / slot.peak_equity if slot.peak_equity > 0 else 0.0
        if dd > 0.10:
            return 0.75
        ret = (eq - slot.capital) / slot.base_capital if slot.base_capital else 0.0
        if ret > 0.05 and slot.capital * 1.1 <= slot.base_capital * 2:
            return 1.1
        return 1.0

    # -- running -------------------------------------------------------------------------
    def run_strategy(self, name: str, bar: Bar, *, trade: bool = True) -> list[Order]:
        """Feed one closed bar to one strategy; with ``trade``, send the orders it asks for.

        The strategy sees its position *including* what it already has working, so a
        partially filled order is not sent again. When it turns the other way, its working
        orders in that symbol are cancelled first and it is asked again from its filled
        position: two opposite orders of one strategy never work at once.
        """
        slot = self._slot(name)
        if slot.state is StrategyState.ERROR:
            return []
        strat = slot.instance(bar.symbol)
        try:
            target = strat.on_bar(bar)
            if not trade or slot.state is not StrategyState.RUNNING or math.isnan(target):
                return []
            # Sized at the price the orders will meet: the market's latest (the update that
            # closed the bar), as a backtest sizes at the open it fills at; the close without one.
            mark = self.marks(bar.symbol)
            price = mark if mark is not None and 0 < mark < math.inf else bar.close
            working = [
                o
                for o in self.oms.open.values()
                if o.strategy_id == name and o.instrument.underlying == bar.symbol
            ]
            ctx = self.context(slot, bar.symbol, price, bar.ts, working=working)
            signals = net_signals(strat.execute(target, ctx))
            if signals and working and _opposes(signals, working):
                for o in working:
                    if o.status is not OrderStatus.PENDING_CANCEL:
                        try:
                            self.oms.cancel_order(o.client_order_id)
                        except Exception as e:  # the venue refused: report it, keep going
                            self.log(
                                "warning",
                                "order",
                                f"{name}: cancel {o.client_order_id} failed: {e}",
                            )
                strat.forget_target(bar.symbol)
                still = [
                    o
                    for o in self.oms.open.values()
                    if o.strategy_id == name and o.instrument.underlying == bar.symbol
                ]
                ctx = self.context(slot, bar.symbol, price, bar.ts, working=still)
                signals = net_signals(strat.execute(target, ctx))
        except Exception as e:  # one strategy's bug must not stop the others
            self._fail(slot, e)
            return []
        if signals:
            slot.last_signal = f"{bar.symbol} {target:+g}"
            slot.last_signal_ts = self.clock()
        return self._send(slot, signals)

    def on_bar(self, bar: Bar, *, trade: bool = True) -> list[Order]:
        out: list[Order] = []
        for slot in self._by_symbol.get(bar.symbol, ()):
            out.extend(self.run_strategy(slot.name, bar, trade=trade))
        return out

    def run_on_frame(self, name: str, bars: pd.DataFrame, symbol: str) -> pd.DataFrame:
        """The strategy's vectorised signals on a frame (what the UI shows as 'last signal')."""
        return self._slot(name).instance(symbol).analyze(bars)

    def on_price(self, symbol: str, price: float, ts: float) -> list[Order]:
        """Stop-loss / take-profit checks for every strategy holding ``symbol``."""
        out: list[Order] = []
        for slot in self._by_symbol.get(symbol, ()):
            if not slot.risk.active or slot.state is StrategyState.ERROR:
                continue
            pos = self.oms.strategy_positions.get((slot.name, symbol))
            if pos is None:
                continue
            if pos.is_flat:
                slot.risk.exit_done(symbol)
                continue
            if any(
                o.strategy_id == slot.name and o.symbol == symbol for o in self.oms.open.values()
            ):
                continue  # an order is already working this position
            sig = slot.risk.on_price(pos, price, ts)
            if sig is not None:
                self.log(
                    "warning",
                    "risk",
                    f"{slot.name}: {sig.reason}; closing {symbol} {pos.quantity:+g}",
                )
                slot.instance(symbol).forget_target(symbol)
                sent = self._send(slot, [sig])
                if not sent or sent[0].status in (OrderStatus.REJECTED, OrderStatus.CANCELLED):
                    slot.risk.exit_done(symbol)
                out.extend(sent)
        return out

    def context(
        self,
        slot: StrategySlot,
        symbol: str,
        price: float,
        ts: float,
        working: Sequence[Order] = (),
    ) -> StrategyContext:
        positions = {key: p.quantity for key, p in self.positions_of(slot.name).items()}
        for o in working:
            if o.status is not OrderStatus.PENDING_CANCEL:
                positions[o.symbol] = positions.get(o.symbol, 0.0) + o.side.sign * o.remaining
        return StrategyContext(
            strategy_id=slot.name,
            symbol=symbol,
            price=price,
            ts=ts,
            equity=self.equity(slot.name),
            position=positions.get(symbol, 0.0),
            sizing=slot.sizing,
            commission_fraction=self.commission_fraction,
            positions=positions,
            option_chain=self.option_chain,
            fee=self.fee,
            open_orders=sum(
                1
                for o in self.oms.open.values()
                if o.strategy_id == slot.name and o.symbol == symbol
            ),
        )

    def _send(self, slot: StrategySlot, signals: list[Signal]) -> list[Order]:
        """Hand the intents to OrderManagement, through the OrderQueue when there is one."""
        if not signals:
            return []
        if self.queue is None:
            orders = [self.oms.create_order(sig) for sig in signals]
        else:
            queued = 0
            for sig in signals:
                try:
                    self.queue.enqueue_order(sig)
                    queued += 1
                except QueueFull as e:  # never a silent drop: the operator hears of it
                    self.log("error", "order", f"{slot.name}: {e}")
            orders = self.queue.submit_all(self.oms, max_items=queued) if queued else []
        out = []
        for order in orders:
            slot.orders_sent += 1
            if order.status is OrderStatus.REJECTED:
                slot.orders_rejected += 1
                self.log(
                    "warning",
                    "order",
                    f"{slot.name}: {order.side.value} {order.quantity:g} "
                    f"{order.symbol} rejected: {order.reason}",
                )
            out.append(order)
        return out

    def forget_targets(self, name: str | None = None) -> None:
        """Let every (or one) strategy act on its next target even if it repeats."""
        for slot in self.slots.values():
            if name is None or slot.name == name:
                for sym in slot.symbols:
                    slot.instance(sym).forget_target(sym)

    def _fail(self, slot: StrategySlot, e: BaseException) -> None:
        slot.state = StrategyState.ERROR
        where = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        at = f" at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}" if where else ""
        slot.error = f"{type(e).__name__}: {e}{at}"
        self.log("error", "strategy", f"{slot.name} stopped: {slot.error}")
        if self.on_error:
            self.on_error(slot, e)


def net_signals(signals: Sequence[Signal]) -> list[Signal]:
    """Market intents for one instrument netted into one (or none).

    backtesting.py-style strategies close and re-open in two steps; at a live venue that is
    two commissions for nothing, so the executor sends the net. Non-market intents pass as
    they are.
    """
    if len(signals) < 2:
        return list(signals)
    out: list[Signal] = []
    net: dict[str, float] = {}
    first: dict[str, Signal] = {}
    for sig in signals:
        if sig.order_type is not OrderType.MARKET:
            out.append(sig)
            continue
        key = sig.instrument.key
        first.setdefault(key, sig)
        net[key] = net.get(key, 0.0) + sig.side.sign * sig.quantity
    for key, qty in net.items():
        if abs(qty) < 1e-9:
            continue
        s0 = first[key]
        out.append(
            dataclasses.replace(s0, side=Side.BUY if qty > 0 else Side.SELL, quantity=abs(qty))
        )
    return out


def _opposes(signals: Sequence[Signal], working: Sequence[Order]) -> bool:
    sides = {(o.instrument.key, o.side) for o in working}
    return any((s.instrument.key, s.side.opposite) in sides for s in signals)
