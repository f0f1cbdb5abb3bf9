"""Stop rules, as pure functions: where a position's stop-loss, take-profit and trailing stop
sit, and when and where they exit it.

**Units.** Every limit names its unit in its key (:class:`fbterm.config.StrategyRiskConfig`):

* ``*_pct``: percent of the entry price (a long's stop-loss at ``entry - entry * pct / 100``);
* ``*_points``: price points per unit held (a long's stop-loss at ``entry - points``);
* ``*_money``: P&L of the whole position in account currency, multiplier included (a long of
  ``q`` units with multiplier ``m``: ``entry - money / (q * m)``);
* trailing stops measure from the best price since entry (the highest for a long, the lowest
  for a short, never worse than the entry), in percent or points.

Several stops: the tightest wins (the highest stop under a long); several targets: the nearest.

**One computation, two price feeds.** :meth:`StopRules.levels` turns the limits into a stop
price and a take-profit price; everything else asks it:

* per price (live and paper trading, :class:`fbterm.risk.strategy.StrategyLevelRisk`):
  :func:`price_exit` fires when a trade price touches a level, and the exit is a market order,
  so it fills at the next price;
* per bar (both backtest paths): :func:`bar_exit` fires when a bar's range touches a level, and
  the exit fills as the fill model (:mod:`fbterm.execution.brokers.fills`) fills a resting stop
  or limit order at that level: at the level, or at the bar's open when the bar opened beyond
  it (a gap). A bar that touches both levels exits at the stop: a bar does not say which came
  first, so the backtest assumes the worse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fbterm.config import StrategyRiskConfig
from fbterm.execution.brokers.fills import limit_fill_price, limit_touched, stop_price, stop_touched
from fbterm.model import Position

STOP_KEYS = (
    "stop_loss_pct",
    "stop_loss_points",
    "stop_loss_money",
    "take_profit_pct",
    "take_profit_points",
    "take_profit_money",
    "trailing_stop_pct",
    "trailing_stop_points",
)


_UNITS = {
    "%": "pct", "pct": "pct", "percent": "pct", "pt": "points", "pts": "points",
    "point": "points", "points": "points", "$": "money", "money": "money",
}  # fmt: skip


def parse_amount(text: str) -> tuple[float, str]:
    """A stop distance as written on a command line: ``5`` or ``5%`` (percent of the entry),
    ``2.5pt`` (price points per unit), ``$300`` or ``300money`` (money on the position).
    Returns (value, unit: "pct", "points" or "money"); ValueError naming the forms."""
    t = text.strip().lower().replace(" ", "")
    unit = "pct"
    if t.startswith("$"):
        t, unit = t[1:], "money"
    else:
        for suffix in sorted(_UNITS, key=len, reverse=True):
            if t.endswith(suffix) and len(t) > len(suffix):
                t, unit = t[: -len(suffix)], _UNITS[suffix]
                break
    try:
        value = float(t)
    except ValueError:
        raise ValueError(
            f"expected an amount like 5 or 5% (percent of entry), 2.5pt (price points per "
            f"unit) or $300 (money on the position), got {text!r}"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"must be a finite number, got {text!r}")
    return value, unit


def money(v: float) -> str:
    """An amount as the risk reasons print it: no cents once it reaches 100."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def any_stop(cfg: StrategyRiskConfig) -> bool:
    """Whether ``cfg`` sets any stop at all (no rule: nothing to watch)."""
    return any(getattr(cfg, k) is not None for k in STOP_KEYS)


@dataclass(frozen=True, slots=True)
class StopRules:
    """A strategy's stop limits, each in its named unit; None: not set."""

    sl_pct: float | None = None
    sl_points: float | None = None
    sl_money: float | None = None
    tp_pct: float | None = None
    tp_points: float | None = None
    tp_money: float | None = None
    trail_pct: float | None = None
    trail_points: float | None = None

    @classmethod
    def from_config(cls, risk: StrategyRiskConfig | None) -> StopRules | None:
        """The rules of ``risk``; None when it sets none, so callers skip the stop checks."""
        if risk is None or not any_stop(risk):
            return None
        return cls(*(getattr(risk, k) for k in STOP_KEYS))

    @property
    def trails(self) -> bool:
        return self.trail_pct is not None or self.trail_points is not None

    def named_levels(
        self,
        long: bool,
        entry: float,
        extreme: float,
        quantity: float = 0.0,
        multiplier: float = 1.0,
    ) -> tuple[float, str, float, str]:
        """(stop, the rule that set it, take-profit, the rule that set it) for a position of
        ``quantity`` units entered at ``entry`` whose best price since is ``extreme``. NaN and
        "" where there is none. A money limit needs the quantity: without one it is skipped."""
        return self._levels(long, entry, extreme, abs(quantity) * multiplier, True)

    def levels(
        self,
        long: bool,
        entry: float,
        extreme: float,
        quantity: float = 0.0,
        multiplier: float = 1.0,
    ) -> tuple[float, float]:
        """(stop, take-profit) prices; NaN where there is none. See :meth:`named_levels`."""
        stop, _, tp, _ = self._levels(long, entry, extreme, abs(quantity) * multiplier, False)
        return stop, tp

    def _levels(
        self, long: bool, entry: float, extreme: float, size: float, named: bool
    ) -> tuple[float, str, float, str]:
        # The one computation of the levels; names are built only when asked for (the fast
        # backtest asks for levels once per trade, and formatting would be most of the cost).
        sign = 1.0 if long else -1.0
        stops: list[float] = []
        s_names: list[str] = []
        targets: list[float] = []
        t_names: list[str] = []
        if self.sl_pct is not None:
            stops.append(entry - sign * entry * self.sl_pct / 100.0)
            if named:
                s_names.append(f"stop_loss {self.sl_pct:g}%")
        if self.sl_points is not None:
            stops.append(entry - sign * self.sl_points)
            if named:
                s_names.append(f"stop_loss {self.sl_points:g} points")
        if self.sl_money is not None and size > 0:
            stops.append(entry - sign * self.sl_money / size)
            if named:
                s_names.append(f"stop_loss {money(self.sl_money)}")
        if self.trail_pct is not None:
            stops.append(extreme - sign * extreme * self.trail_pct / 100.0)
            if named:
                s_names.append(f"trailing_stop {self.trail_pct:g}%")
        if self.trail_points is not None:
            stops.append(extreme - sign * self.trail_points)
            if named:
                s_names.append(f"trailing_stop {self.trail_points:g} points")
        if self.tp_pct is not None:
            targets.append(entry + sign * entry * self.tp_pct / 100.0)
            if named:
                t_names.append(f"take_profit {self.tp_pct:g}%")
        if self.tp_points is not None:
            targets.append(entry + sign * self.tp_points)
            if named:
                t_names.append(f"take_profit {self.tp_points:g} points")
        if self.tp_money is not None and size > 0:
            targets.append(entry + sign * self.tp_money / size)
            if named:
                t_names.append(f"take_profit {money(self.tp_money)}")
        # The tightest stop and the nearest target: for a long the highest stop and the lowest
        # target, for a short the reverse.
        stop = tp = math.nan
        s_name = t_name = ""
        if stops:
            k = stops.index(max(stops) if long else min(stops))
            stop, s_name = stops[k], s_names[k] if named else ""
        if targets:
            k = targets.index(min(targets) if long else max(targets))
            tp, t_name = targets[k], t_names[k] if named else ""
        return stop, s_name, tp, t_name


# --------------------------------------------------------------------------- per price


def price_exit(rules: StopRules, pos: Position, price: float, best: float) -> str | None:
    """Why ``pos`` must exit at trade price ``price`` (``best``: the best price since entry,
    for trailing stops), or None. The reason names the rule, its unit and the numbers."""
    if pos.is_flat or not price > 0:
        return None
    long = pos.quantity > 0
    stop, s_name, tp, t_name = rules.named_levels(
        long, pos.avg_cost, best, pos.quantity, pos.multiplier
    )
    op = "<=" if long else ">="
    if stop == stop and stop_touched(not long, stop, price, price):
        return f"{s_name}: {price:,.2f} {op} {stop:,.2f}"
    if tp == tp and limit_touched(not long, tp, price, price):
        return f"{t_name}: {price:,.2f} {'>=' if long else '<='} {tp:,.2f}"
    return None


# ----------------------------------------------------------------------------- per bar


def bar_exit(
    long: bool, stop: float, take_profit: float, open_: float, high: float, low: float
) -> tuple[str, float] | None:
    """The exit a bar triggers for a position at these levels, and its fill price; or None.

    The stop wins when the bar reaches both: a bar does not say which came first, so the
    backtest assumes the worse. The exit is a sell stop / sell limit for a long (a buy for a
    short) and fills as the fill model fills those orders: at the level, or at the open when
    the bar opens beyond it. NaN levels never trigger.
    """
    buy = not long
    if stop == stop and stop_touched(buy, stop, high, low):
        return "stop", stop_price(buy, stop, open_)
    if take_profit == take_profit and limit_touched(buy, take_profit, high, low):
        price = limit_fill_price(buy, take_profit, open_, low, high)
        assert price is not None  # a touched limit always fills within the bar
        return "take-profit", price
    return None
