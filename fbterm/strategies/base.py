"""StrategyInterface: the one strategy API shared by backtests, paper and live trading.

A strategy maps bars to a *target* per bar: a number in [-1, 1] (the share of its allocation
to hold long or short; 0 flat) or NaN for "no new opinion, keep what you have". Two ways to get
targets, which must agree bar for bar:

* :meth:`StrategyInterface.analyze` is vectorised over a whole bar DataFrame (the backtester's
  fast path, and what the UI shows);
* :meth:`StrategyInterface.on_bar` is the streaming form the live engine and the backtester's
  replay path call once per closed bar. The default keeps a window and calls ``analyze``;
  built-in strategies override it with O(1) state so the engine stays fast.

:meth:`StrategyInterface.execute` turns the latest target and the strategy's current position
into order intents (:class:`fbterm.model.Signal`), which the executor hands to OrderManagement
after the risk gate. Orders are generated only when the target changes, so a held position is
not resized on every bar.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from fbterm.model import (
    Bar,
    Instrument,
    OptionQuote,
    OrderType,
    Side,
    Signal,
    instrument_from_key,
)


class StrategyError(ValueError):
    """A strategy was configured wrongly (unknown parameter, wrong type, impossible value)."""


@dataclass(frozen=True, slots=True)
class Param:
    """A strategy parameter: name, type and default, plus bounds the config and UI validate."""

    name: str
    type: type
    default: Any
    help: str = ""
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None

    def coerce(self, value: Any, where: str = "") -> Any:
        """``value`` as this parameter's type, or a StrategyError naming the problem."""
        label = f"{where}{self.name}"
        v = value
        if isinstance(v, str) and self.type is not str:
            text = v.strip()
            try:
                if self.type is bool:
                    if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError
                    v = text.lower() in ("true", "1", "yes")
                elif self.type is int:
                    v = int(text)
                elif self.type is float:
                    v = float(text)
            except ValueError:
                raise StrategyError(
                    f"parameter {label}: expected {self.type.__name__}, got {value!r}"
                ) from None
        if self.type is float and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        if self.type is int and isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, self.type) or (self.type is not bool and isinstance(v, bool)):
            raise StrategyError(
                f"parameter {label}: expected {self.type.__name__}, got {type(value).__name__} {value!r}"
            )
        if isinstance(v, float) and not math.isfinite(v):
            raise StrategyError(f"parameter {label}: must be finite, got {v!r}")
        if isinstance(v, int | float):  # bounds are for numbers
            if self.min is not None and v < self.min:
                raise StrategyError(f"parameter {label}: must be >= {self.min:g}, got {v!r}")
            if self.max is not None and v > self.max:
                raise StrategyError(f"parameter {label}: must be <= {self.max:g}, got {v!r}")
        if self.choices is not None and v not in self.choices:
            raise StrategyError(f"parameter {label}: must be one of {self.choices}, got {v!r}")
        return v


# ------------------------------------------------------------------------------- sizing

SIZING_MODES = ("fixed", "cash", "fraction", "all_in")


@dataclass(frozen=True, slots=True)
class Sizing:
    """How a target in [-1, 1] becomes a quantity.

    * fixed: ``value`` units (shares/contracts) at full target;
    * cash: ``value`` currency at full target;
    * fraction: as many whole units as ``value`` x the strategy's equity buys at full target,
      commission included (backtesting.py's ``buy(size=value)``);
    * all_in: every whole unit the available equity buys, net of commission
      (backtesting.py's ``buy()`` with no size).

    fraction and all_in spend equity left after closing the position they reverse (its
    commission paid), as backtesting.py closes the old trade before sizing the new one.
    """

    mode: str = "fraction"
    value: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in SIZING_MODES:
            raise StrategyError(
                f"sizing mode must be one of {', '.join(SIZING_MODES)}, got {self.mode!r}"
            )
        if not (self.value > 0 and math.isfinite(self.value)):
            raise StrategyError(f"sizing value must be > 0, got {self.value!r}")


Sizer = Callable[[float, float, float, float], float]
"""``(target, price, equity, position) -> signed whole units``: one sizing, prepared."""

Fee = Callable[[float, float, int], float]
"""``(quantity, price, multiplier) -> commission``: a commission model sizing must leave room
for (a future's commission is per contract, not per point)."""


def sizer(
    sizing: Sizing,
    *,
    multiplier: int = 1,
    commission_fraction: float = 0.0,
    fee: Fee | None = None,
) -> Sizer:
    """The sizing rule with its settings bound, for loops that size many times with the same
    settings (the backtester's fast path sizes once per trade, tens of thousands of times):
    the mode is decided here once instead of on every call. :func:`target_quantity` is this
    function applied once, so every caller sizes with the same arithmetic.

    ``position`` is the quantity held now: when all_in closes or reverses it, the equity to
    spend is what is left after paying the commission on the closing leg (backtesting.py
    closes the old trade before sizing the new one).

    A commission that is a fraction of value is netted in closed form; any other (IB's per
    share with its minimum) is given as ``fee`` and the size is cut until units plus their fee
    fit the budget, so an all-in order never costs more than the equity.
    """
    mode, value, cf = sizing.mode, sizing.value, commission_fraction
    fixed, cash = mode == "fixed", mode == "cash"
    relative = not (fixed or cash)  # fraction, all_in: the common case, tested first
    # backtesting.py sizes all_in at (1 - eps) of equity, net of commission.
    share = 1 - 1e-10 if mode == "all_in" else value
    floor, copysign, inf = math.floor, math.copysign, math.inf

    def size(target: float, price: float, equity: float, position: float) -> float:
        # Written as a chained comparison, not math.isfinite: this runs once per trade in
        # the fast path and a call is a measurable share of it. NaN fails it too.
        if not target or not 0.0 < price < inf:
            return 0.0
        unit = price * multiplier
        if relative:
            if position and (position > 0) != (target > 0):
                equity -= abs(position) * unit * cf
                if fee is not None:
                    equity -= fee(abs(position), price, multiplier)
            budget = max(equity, 0.0) * share * abs(target)
            units = budget / (unit * (1 + cf))
            if fee is not None:
                whole = float(floor(units + 1e-9))
                while whole > 0 and whole * unit + fee(whole, price, multiplier) > budget:
                    whole -= 1.0
                return copysign(whole, target)
        elif fixed:
            units = value * abs(target)
        else:  # cash
            units = value * abs(target) / unit
        return copysign(float(floor(units + 1e-9)), target)

    return size


ArraySizer = Callable[[Any, Any, Any, Any], Any]
"""The array twin of :data:`Sizer`: numpy arrays of targets, prices, equities and positions."""


def sizer_array(
    sizing: Sizing, *, multiplier: int = 1, commission_fraction: float = 0.0
) -> ArraySizer:
    """:func:`sizer` over numpy float arrays, element for element the same arithmetic (the
    sweep engine sizes many parameter sets at once with it; a test holds the twins equal).
    Callers silence numpy's division warnings: idle entries may carry a zero price."""
    import numpy as np

    mode, value, cf = sizing.mode, sizing.value, commission_fraction
    share = 1 - 1e-10 if mode == "all_in" else value
    inf = math.inf

    def size(target: Any, price: Any, equity: Any, position: Any) -> Any:
        unit = price * multiplier
        at = np.abs(target)
        if mode in ("all_in", "fraction"):
            flip = (position != 0) & ((position > 0) != (target > 0))
            if flip.any():
                equity = np.where(flip, equity - np.abs(position) * unit * cf, equity)
            units = np.maximum(equity, 0.0) * share * at / (unit * (1 + cf))
        elif mode == "fixed":
            units = value * at
        else:  # cash
            units = value * at / unit
        out = np.copysign(np.floor(units + 1e-9), target)
        ok = (target != 0) & (price > 0) & (price < inf)
        return out if ok.all() else np.where(ok, out, 0.0)

    return size


def target_quantity(
    target: float,
    price: float,
    equity: float,
    sizing: Sizing,
    *,
    multiplier: int = 1,
    commission_fraction: float = 0.0,
    position: float = 0.0,
    fee: Fee | None = None,
) -> float:
    """Whole units to hold for ``target`` at ``price`` (signed); see :func:`sizer`."""
    size = sizer(sizing, multiplier=multiplier, commission_fraction=commission_fraction, fee=fee)
    return size(target, price, equity, position)


def reentry_equity(
    equity: float,
    position: float,
    price: float,
    commission_fraction: float,
    fee: Fee | None = None,
    multiplier: int = 1,
) -> float:
    """The equity a re-entry sizes on: what is left once ``position`` is closed at ``price``
    and its commission paid (the close and the new entry go out together)."""
    closing = fee(abs(position), price, multiplier) if fee is not None and position else 0.0
    return equity - abs(position) * price * multiplier * commission_fraction - closing


# ------------------------------------------------------------------------------ context


@dataclass(slots=True)
class StrategyContext:
    """What ``execute`` may know about the world at the time of a bar."""

    strategy_id: str
    symbol: str
    price: float  # the last close / trade price of ``symbol``
    ts: float
    equity: float  # the strategy's capital plus its P&L, positions marked to market
    position: float  # the strategy's current quantity in ``symbol``
    sizing: Sizing = field(default_factory=Sizing)
    commission_fraction: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)  # every instrument it holds
    option_chain: Callable[[str], Sequence[OptionQuote]] | None = None
    open_orders: int = 0  # its working orders in ``symbol``
    fee: Fee | None = None  # a commission that is not a fraction of value, for sizing


# ---------------------------------------------------------------------------- interface


class StrategyInterface(ABC):
    """Base class of every strategy. Subclasses set ``name``, ``params`` and ``analyze``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    # A repeated target closes the position and opens it again, sized afresh (backtesting.py's
    # SmaCross does ``position.close(); sell()`` on every cross, even a second one in a row).
    reenter_on_repeat: ClassVar[bool] = False

    def __init__(self, strategy_id: str | None = None, **params: Any):
        self.strategy_id = strategy_id or self.name or type(self).__name__
        self.p = self.validate_params(params, where=f"{self.strategy_id}.")
        self._last_target: dict[str, float] = {}
        self._window: dict[str, deque[Bar]] = {}
        self.check()

    # -- parameters ----------------------------------------------------------------------
    @classmethod
    def validate_params(cls, given: dict[str, Any], where: str = "") -> dict[str, Any]:
        known = {p.name: p for p in cls.params}
        for k in given:
            if k not in known:
                names = ", ".join(known) or "none"
                raise StrategyError(
                    f"parameter {where}{k}: unknown for {cls.name or cls.__name__} (known: {names})"
                )
        return {n: p.coerce(given[n], where) if n in given else p.default for n, p in known.items()}

    def check(self) -> None:
        """Cross-parameter validation; raise StrategyError. Override when needed."""

    @classmethod
    def describe_params(cls) -> list[dict[str, Any]]:
        return [
            {
                "name": p.name,
                "type": p.type.__name__,
                "default": p.default,
                "help": p.help,
                "min": p.min,
                "max": p.max,
            }
            for p in cls.params
        ]

    def warmup(self) -> int:
        """Bars needed before the first signal can appear."""
        return 1

    # -- signals -------------------------------------------------------------------------
    @abstractmethod
    def analyze(self, bars: pd.DataFrame) -> pd.DataFrame:
        """Signals for every bar: a DataFrame on ``bars.index`` with a float column ``target``
        (NaN: keep the previous target). Uses only data up to each bar."""

    def reset(self) -> None:
        """Forget streaming state (a new backtest, or a hot swap)."""
        self._window.clear()
        self._last_target.clear()

    def on_bar(self, bar: Bar) -> float:
        """The target for the bar that just closed (NaN for none). The default re-runs
        ``analyze`` on a window; override for O(1) streaming state."""
        win = self._window.get(bar.symbol)
        if win is None:
            win = self._window[bar.symbol] = deque(maxlen=max(self.warmup() * 3, 64))
        win.append(bar)
        frame = bars_frame(list(win))
        sig = self.analyze(frame)
        return float(sig["target"].iloc[-1]) if len(sig) else math.nan

    def execute(self, signals: pd.DataFrame | float, ctx: StrategyContext) -> list[Signal]:
        """Order intents that move the position toward the latest target.

        Acts only when the target differs from the one last acted on, so a held position is
        not re-sized every bar; a target of NaN keeps things as they are.
        """
        target = _latest_target(signals)
        if math.isnan(target):
            return []
        prev = self._last_target.get(ctx.symbol)
        if prev is not None and target == prev:
            if not (self.reenter_on_repeat and target):
                return []
            return self._reenter(target, ctx)
        self._last_target[ctx.symbol] = target
        qty = target_quantity(
            target,
            ctx.price,
            ctx.equity,
            ctx.sizing,
            multiplier=instrument_from_key(ctx.symbol).multiplier,
            commission_fraction=ctx.commission_fraction,
            position=ctx.position,
            fee=ctx.fee,
        )
        return self.orders_to(qty, ctx, reason=f"target {target:+g}")

    def _reenter(self, target: float, ctx: StrategyContext) -> list[Signal]:
        """Close the position, then open ``target`` sized on the equity left after closing."""
        equity = reentry_equity(
            ctx.equity,
            ctx.position,
            ctx.price,
            ctx.commission_fraction,
            ctx.fee,
            instrument_from_key(ctx.symbol).multiplier,
        )
        qty = target_quantity(
            target,
            ctx.price,
            equity,
            ctx.sizing,
            multiplier=instrument_from_key(ctx.symbol).multiplier,
            commission_fraction=ctx.commission_fraction,
            fee=ctx.fee,
        )
        out = self.orders_to(0.0, ctx, reason=f"re-enter {target:+g}: close")
        if qty:
            out.append(
                Signal(
                    strategy_id=self.strategy_id,
                    instrument=instrument_from_key(ctx.symbol),
                    side=Side.BUY if qty > 0 else Side.SELL,
                    quantity=abs(qty),
                    order_type=OrderType.MARKET,
                    signal_price=ctx.price,
                    ts=ctx.ts,
                    reason=f"re-enter {target:+g}",
                )
            )
        return out

    def orders_to(
        self,
        quantity: float,
        ctx: StrategyContext,
        *,
        reason: str = "",
        instrument: Instrument | None = None,
    ) -> list[Signal]:
        """Market-order intents that take the position in ``instrument`` to ``quantity``."""
        inst = instrument or instrument_from_key(ctx.symbol)
        current = ctx.positions.get(inst.key, ctx.position if inst.key == ctx.symbol else 0.0)
        delta = quantity - current
        if abs(delta) < 1e-9:
            return []
        return [
            Signal(
                strategy_id=self.strategy_id,
                instrument=inst,
                side=Side.BUY if delta > 0 else Side.SELL,
                quantity=abs(delta),
                order_type=OrderType.MARKET,
                signal_price=ctx.price,
                ts=ctx.ts,
                reason=reason,
            )
        ]

    def forget_target(self, symbol: str) -> None:
        """Make the next non-NaN target act even if it repeats (after a stop closed the position)."""
        self._last_target.pop(symbol, None)

    def last_target(self, symbol: str) -> float | None:
        return self._last_target.get(symbol)


def history_problem(strategy: StrategyInterface, history_bars: int) -> tuple[str, str] | None:
    """``(parameter, reason)`` when ``strategy`` needs more bars than the engine keeps
    (``history_bars``): it could never trade, and warming it up would take minutes. The
    parameter is the window that is too long ('' when no single one is)."""
    need = strategy.warmup()
    if need <= history_bars:
        return None
    too_long = [
        p.name
        for p in type(strategy).params
        if p.type is int
        and isinstance(strategy.p.get(p.name), int)
        and strategy.p[p.name] > history_bars
    ]
    reason = f"needs {need:,} bars of history, more than market.history_bars = {history_bars:,}"
    return (too_long[0] if too_long else "", reason)


def _latest_target(signals: pd.DataFrame | float) -> float:
    if isinstance(signals, pd.DataFrame):
        if signals.empty:
            return math.nan
        return float(signals["target"].iloc[-1])
    return float(signals)


def bars_frame(bars: Sequence[Bar]) -> pd.DataFrame:
    """Bars as the one bar DataFrame shape (tz-aware UTC index named ts)."""
    idx = pd.DatetimeIndex(pd.to_datetime([b.ts for b in bars], unit="s", utc=True), name="ts")
    return pd.DataFrame(
        {
            "open": [b.open for b in bars],
            "high": [b.high for b in bars],
            "low": [b.low for b in bars],
            "close": [b.close for b in bars],
            "volume": [b.volume for b in bars],
        },
        index=idx,
        dtype="float64",
    )


def signal_frame(index: pd.Index, target: Any, **extra: Any) -> pd.DataFrame:
    """Build analyze()'s result: a ``target`` column plus any indicator columns to display."""
    return pd.DataFrame({"target": target, **extra}, index=index, dtype="float64")
