"""StrategyLevelRisk: one strategy's exits (stop-loss, take-profit, trailing stop) while it trades.

It watches prices against the strategy's positions with the rules of :mod:`fbterm.risk.stops`
(the same levels a backtest computes) and, when one fires, emits an ordinary closing market
order that goes through the same pre-trade gate as any other (:mod:`fbterm.risk.portfolio`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fbterm.config import StrategyRiskConfig
from fbterm.model import OrderType, Position, Side, Signal
from fbterm.risk.stops import StopRules, price_exit


@dataclass(slots=True)
class _Watermark:
    quantity: float
    best: float  # highest price while long, lowest while short


class StrategyLevelRisk:
    """Stop-loss, take-profit and trailing stops for one strategy's positions.

    A trigger produces an ordinary market order (a :class:`Signal`) that closes the position;
    it goes through the same pre-trade gate as any other order.
    """

    def __init__(self, strategy_id: str, cfg: StrategyRiskConfig | None = None):
        self.strategy_id = strategy_id
        self.cfg = cfg or StrategyRiskConfig()
        self.rules = StopRules.from_config(self.cfg)
        self._marks: dict[str, _Watermark] = {}
        self._exiting: set[str] = set()
        # Read on every tick for every strategy: decided once.
        self.active = self.rules is not None

    def _exit(self, pos: Position, price: float, reason: str, ts: float | None) -> Signal:
        self._exiting.add(pos.symbol)
        return Signal(
            strategy_id=self.strategy_id,
            instrument=pos.instrument,
            side=Side.SELL if pos.quantity > 0 else Side.BUY,
            quantity=abs(pos.quantity),
            order_type=OrderType.MARKET,
            signal_price=price,
            ts=ts or time.time(),
            reason=reason,
        )

    def _best(self, pos: Position, price: float) -> float:
        """The best price since entry, this one included (never worse than the entry)."""
        wm = self._marks.get(pos.symbol)
        long = pos.quantity > 0
        if wm is None or wm.quantity * pos.quantity <= 0:
            start = max(price, pos.avg_cost) if long else min(price, pos.avg_cost)
            wm = self._marks[pos.symbol] = _Watermark(pos.quantity, start)
        wm.quantity = pos.quantity
        wm.best = max(wm.best, price) if long else min(wm.best, price)
        return wm.best

    def on_price(self, pos: Position, price: float, ts: float | None = None) -> Signal | None:
        """A closing order when a stop, trailing stop or take-profit fires at ``price``."""
        if pos.is_flat:
            self._marks.pop(pos.symbol, None)
            self._exiting.discard(pos.symbol)
            return None
        if self.rules is None or pos.symbol in self._exiting:
            return None
        best = self._best(pos, price) if self.rules.trails else pos.avg_cost
        reason = price_exit(self.rules, pos, price, best)
        return self._exit(pos, price, reason, ts) if reason else None

    def apply_stop_loss(
        self, pos: Position, price: float, ts: float | None = None
    ) -> Signal | None:
        """A closing order when the stop-loss (fixed or trailing) fires, else None."""
        sig = self.on_price(pos, price, ts)
        if sig is not None and sig.reason.startswith("take_profit"):
            self._exiting.discard(pos.symbol)
            return None
        return sig

    def apply_take_profit(
        self, pos: Position, price: float, ts: float | None = None
    ) -> Signal | None:
        """A closing order when the take-profit fires, else None."""
        sig = self.on_price(pos, price, ts)
        if sig is not None and not sig.reason.startswith("take_profit"):
            self._exiting.discard(pos.symbol)
            return None
        return sig

    def exit_done(self, symbol: str) -> None:
        """The exit order finished (filled or failed): watch the position afresh."""
        self._exiting.discard(symbol)
