"""Stop rules, as pure functions: when a position's stop-loss, take-profit or trailing stop fires.

Two forms, for two kinds of price feed:

* per price (live and paper trading, :class:`fbterm.risk.strategy.StrategyLevelRisk`):
  :func:`stop_loss_hit`, :func:`take_profit_hit` and :func:`trailing_stop_hit` judge one trade
  price against the position and name the rule that fired;
* per bar (both backtest paths): :class:`StopRules` turns the configuration into price levels
  and :func:`bar_exit` decides which level a bar reaches and where the exit fills, with the
  fill model's own rules (:mod:`fbterm.execution.brokers.fills`).

The two forms read ``stop_loss_abs`` / ``take_profit_abs`` differently: per price they are an
amount of P&L on the whole position, per bar a distance in price per unit. That difference
predates this module and is kept as it is; it is spelled out here so nobody "fixes" one copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fbterm.config import StrategyRiskConfig
from fbterm.execution.brokers.fills import limit_fill_price, limit_touched, stop_price, stop_touched
from fbterm.model import Position


def money(v: float) -> str:
    """An amount as the risk reasons print it: no cents once it reaches 100."""
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


# --------------------------------------------------------------------------- per price


def _move(pos: Position, price: float) -> float:
    """The price move since entry, as a fraction, positive when it favours the position."""
    if not pos.avg_cost:
        return 0.0
    return (price - pos.avg_cost) / pos.avg_cost * (1 if pos.quantity > 0 else -1)


def stop_loss_hit(pos: Position, price: float, cfg: StrategyRiskConfig) -> str | None:
    """Why the stop-loss fires for ``pos`` at ``price``, or None."""
    if pos.is_flat or price <= 0:
        return None
    move = _move(pos, price)
    if cfg.stop_loss_pct is not None and move <= -cfg.stop_loss_pct / 100:
        return f"stop_loss: {move * 100:.2f}% <= -{cfg.stop_loss_pct:g}%"
    pnl = pos.unrealized_pnl(price)
    if cfg.stop_loss_abs is not None and pnl <= -cfg.stop_loss_abs:
        return f"stop_loss: P&L {money(pnl)} <= -{money(cfg.stop_loss_abs)}"
    return None


def take_profit_hit(pos: Position, price: float, cfg: StrategyRiskConfig) -> str | None:
    """Why the take-profit fires for ``pos`` at ``price``, or None."""
    if pos.is_flat or price <= 0:
        return None
    move = _move(pos, price)
    if cfg.take_profit_pct is not None and move >= cfg.take_profit_pct / 100:
        return f"take_profit: {move * 100:.2f}% >= {cfg.take_profit_pct:g}%"
    pnl = pos.unrealized_pnl(price)
    if cfg.take_profit_abs is not None and pnl >= cfg.take_profit_abs:
        return f"take_profit: P&L {money(pnl)} >= {money(cfg.take_profit_abs)}"
    return None


def trailing_stop_hit(quantity: float, best: float, price: float, pct: float) -> str | None:
    """Why the trailing stop fires, ``best`` being the best price since entry; or None."""
    if quantity > 0 and price <= best * (1 - pct / 100):
        return f"trailing_stop: {price:.2f} <= {best:.2f} - {pct:g}%"
    if quantity < 0 and price >= best * (1 + pct / 100):
        return f"trailing_stop: {price:.2f} >= {best:.2f} + {pct:g}%"
    return None


def any_stop(cfg: StrategyRiskConfig) -> bool:
    """Whether ``cfg`` sets any stop at all (no rule: nothing to watch)."""
    return any(
        v is not None
        for v in (
            cfg.stop_loss_pct,
            cfg.stop_loss_abs,
            cfg.take_profit_pct,
            cfg.take_profit_abs,
            cfg.trailing_stop_pct,
        )
    )


# ----------------------------------------------------------------------------- per bar


@dataclass(frozen=True, slots=True)
class StopRules:
    """A strategy's stops as price levels, for a position known by its entry and best price."""

    sl_pct: float | None
    sl_abs: float | None
    tp_pct: float | None
    tp_abs: float | None
    trail_pct: float | None

    @classmethod
    def from_config(cls, risk: StrategyRiskConfig | None) -> StopRules | None:
        """The rules of ``risk``; None when it sets none, so callers skip the stop checks."""
        if risk is None or not any_stop(risk):
            return None
        return cls(
            risk.stop_loss_pct,
            risk.stop_loss_abs,
            risk.take_profit_pct,
            risk.take_profit_abs,
            risk.trailing_stop_pct,
        )

    def levels(self, long: bool, entry: float, extreme: float) -> tuple[float, float]:
        """(stop, take-profit) for a position entered at ``entry`` whose best price since is
        ``extreme`` (highest high for a long, lowest low for a short). NaN: none.

        Several stops: the tightest wins (the highest stop under a long); several targets:
        the nearest."""
        sign = 1.0 if long else -1.0
        stops: list[float] = []
        if self.sl_pct is not None:
            stops.append(entry * (1 - sign * self.sl_pct / 100.0))
        if self.sl_abs is not None:
            stops.append(entry - sign * self.sl_abs)
        if self.trail_pct is not None:
            stops.append(extreme * (1 - sign * self.trail_pct / 100.0))
        targets: list[float] = []
        if self.tp_pct is not None:
            targets.append(entry * (1 + sign * self.tp_pct / 100.0))
        if self.tp_abs is not None:
            targets.append(entry + sign * self.tp_abs)
        tighter, nearer = (max, min) if long else (min, max)
        stop = tighter(stops) if stops else math.nan
        tp = nearer(targets) if targets else math.nan
        return stop, tp


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
